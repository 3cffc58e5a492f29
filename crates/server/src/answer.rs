//! Answers from the knowledge base, for the support agent: search, then the model phrases
//! an answer from the passages found and the grounding gate keeps what they support; else
//! (no model, a model failure, nothing supported) the best passage is quoted. Out of scope
//! with nothing found, the out-of-scope reply. A model failure never fails the answer.
//!
//! Passages that read as prompt injection are withheld: neither the model nor the customer
//! sees them. The model's answer is held back when it repeats its instructions or names a
//! tool (`concierge_guard::check_answer`); the passage is quoted instead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierge_agent::grounding::Unsupported;
use concierge_agent::support::{AnswerError, AnswerRequest, ReplyPart};
use concierge_agent::Answerer;
use concierge_core::{ConversationId, TenantId, UsageRecord};
use concierge_llm::routing::RouteSignals;
use concierge_llm::{counter_for, ChatRequest, LlmError, Usage};
use concierge_retrieval::{ExtractiveAnswer, Hit, SearchRequest, SearchResults};
use concierge_store::Store;
use serde_json::{json, Value};

use crate::grounded;
use crate::knowledge::Knowledge;
use crate::llm::{LlmStack, ModelAnswer};

/// Which path produced an answer, recorded on every assistant message as `answered_by`.
pub const ANSWERED_BY_KNOWLEDGE: &str = "knowledge_base_quote";
pub const ANSWERED_BY_KNOWLEDGE_LLM: &str = "knowledge_base_llm";
pub const ANSWERED_BY_OUT_OF_SCOPE: &str = "out_of_scope";

/// What a customer is told when the message is out of scope and the knowledge base has
/// nothing on it.
pub const OUT_OF_SCOPE_REPLY: &str = "Sorry, that is not something I can help with here. \
I can answer questions about what we offer, or pass you to a person if you ask for one.";

/// The knowledge base, and the model that phrases its answers when there is one.
pub struct KnowledgeAnswerer {
    store: Arc<dyn Store>,
    knowledge: Arc<Knowledge>,
    tenant: TenantId,
    model: Option<AnswerModel>,
    /// The deployment's tool names, which no knowledge answer may name.
    tools: Vec<String>,
}

/// The model that phrases knowledge-base answers, and how long it may take for one.
struct AnswerModel {
    stack: Arc<LlmStack>,
    budget: Duration,
}

impl KnowledgeAnswerer {
    pub fn new(store: Arc<dyn Store>, knowledge: Arc<Knowledge>, tenant: TenantId) -> Self {
        KnowledgeAnswerer { store, knowledge, tenant, model: None, tools: Vec::new() }
    }

    /// The tools the deployment has: an answer from the knowledge base naming one is held
    /// back.
    pub fn with_tools(mut self, tools: Vec<String>) -> Self {
        self.tools = tools;
        self
    }

    /// Lets `stack` phrase answers, each within `budget` (retries and fallbacks included);
    /// past it the answer is quoted from the passages instead.
    pub fn with_model(mut self, stack: Arc<LlmStack>, budget: Duration) -> Self {
        self.model = Some(AnswerModel { stack, budget });
        self
    }
}

#[async_trait]
impl Answerer for KnowledgeAnswerer {
    async fn answer(&self, request: AnswerRequest<'_>) -> Result<ReplyPart, AnswerError> {
        let searched = std::time::Instant::now();
        let (results, in_context) = self.search(&request).await?;
        crate::telemetry::stage("retrieval", searched.elapsed().as_secs_f64());
        // In prompt order: the most relevant passage last.
        let mut hits = self.knowledge.base().context(&results, &self.knowledge.config().context);
        let withheld = withhold_injected(&mut hits);
        if withheld > 0 {
            tracing::warn!(conversation = %request.conversation, withheld, "passages read as prompt injection, withheld");
            crate::telemetry::injection("passage", "withheld", withheld as u64);
        }
        let retrieval = json!({
            "mode": results.mode,
            "not_found": results.not_found,
            "best_similarity": results.best_similarity,
            "passages": hits.len(),
            "ms": results.timings.total_ms,
            "with_previous_message": in_context,
        });
        if hits.is_empty() && request.out_of_scope {
            let metadata = json!({ "answered_by": ANSWERED_BY_OUT_OF_SCOPE, "citations": [], "retrieval": retrieval });
            return Ok(ReplyPart { text: OUT_OF_SCOPE_REPLY.to_owned(), metadata });
        }
        let (text, mut metadata) =
            self.answer_from_passages(&request, &hits).await.map_err(|e| AnswerError(e.to_string()))?;
        metadata["retrieval"] = retrieval;
        if withheld > 0 {
            metadata["guard"]["passages_withheld"] = json!(withheld);
        }
        if hits.is_empty() || metadata["grounded"] != true {
            metadata["failed"] = json!(true);
        }
        Ok(ReplyPart { text, metadata })
    }
}

impl KnowledgeAnswerer {
    /// The search for the question, and whether it was made together with the customer's
    /// message before it. A follow-up ("the link says it's expired") often names too little
    /// to find its article alone; read with the message before it, it does. Of the two
    /// searches the one closer to what it found wins, so a new question after an unrelated
    /// one is searched as it is. Out-of-scope questions are only ever searched alone.
    async fn search(&self, request: &AnswerRequest<'_>) -> Result<(SearchResults, bool), AnswerError> {
        let search = |text: String| {
            let request = SearchRequest::new(self.tenant.clone(), text);
            async move { self.knowledge.search(&request).await.map_err(|e| AnswerError(e.to_string())) }
        };
        let previous = request.history.iter().rev().find(|m| m.role == concierge_core::Role::User);
        let Some(previous) = previous.filter(|_| !request.out_of_scope) else {
            return Ok((search(request.question.to_owned()).await?, false));
        };
        // Both at once: the embedder batches the two questions.
        let (alone, together) = tokio::join!(
            search(request.question.to_owned()),
            search(format!("{} {}", previous.content, request.question))
        );
        let (alone, together) = (alone?, together?);
        let closer = match (alone.not_found, together.not_found) {
            (true, false) => true,
            (false, true) => false,
            _ => together.best_similarity.unwrap_or(0.0) > alone.best_similarity.unwrap_or(0.0),
        };
        Ok(if closer { (together, true) } else { (alone, false) })
    }

    /// The answer from `hits` (prompt order, most relevant last).
    async fn answer_from_passages(
        &self,
        request: &AnswerRequest<'_>,
        hits: &[Hit],
    ) -> Result<(String, Value), AnswerError> {
        let Some(model) = self.model.as_ref().filter(|_| !hits.is_empty()) else {
            return Ok(extractive(hits));
        };
        let prompt = request.prompt.map(|p| p.text.as_str());
        let chat = grounded::request(hits, request.history, request.question, prompt, model.stack.max_answer_tokens());
        let signals = RouteSignals {
            intent: request.intent.map(str::to_owned),
            confidence: request.confidence,
            intents_detected: request.intents_detected,
            prompt_chars: chat.messages.iter().map(|m| m.content.chars().count()).sum(),
            text: request.question.to_owned(),
        };
        match ask(model, &chat, &signals).await {
            Ok(answer) => match self.held_back(&chat, &answer.response.text) {
                Some(blocked) => {
                    tracing::warn!(conversation = %request.conversation, ?blocked, "model answer held back; quoting the knowledge base");
                    crate::telemetry::output_blocked(match blocked {
                        concierge_guard::Blocked::Leak { .. } => "leak",
                        concierge_guard::Blocked::Tool { .. } => "tool",
                    });
                    let (text, mut metadata) = extractive(hits);
                    metadata["guard"] = json!({ "output_blocked": blocked });
                    metadata["model"] = json!(answer.model);
                    Ok((text, metadata))
                }
                None => self.model_answered(request.conversation, hits, &chat, answer).await,
            },
            Err(kind) => {
                tracing::warn!(conversation = %request.conversation, llm_error = kind, "model failed; quoting the knowledge base");
                let (text, mut metadata) = extractive(hits);
                metadata["llm_error"] = json!(kind);
                Ok((text, metadata))
            }
        }
    }

    /// The model's answer as far as the grounding gate lets it through, with citations,
    /// model, route, usage and cost. When no sentence of it rests on a passage the best
    /// passage is quoted instead; either way the call's usage is recorded in the ledger,
    /// unless the answer came from the cache, which spent nothing.
    async fn model_answered(
        &self,
        conversation: ConversationId,
        hits: &[Hit],
        request: &ChatRequest,
        answer: ModelAnswer,
    ) -> Result<(String, Value), AnswerError> {
        let raw = answer.response.text.trim();
        let verdict = grounded::gate(raw, answer.response.finish, hits);
        let (usage, estimated) = match answer.response.usage {
            Some(usage) => (usage, false),
            None => (estimate_usage(&answer.model, request, raw), true),
        };
        let cost_micros = if answer.cached { 0 } else { self.record_usage(conversation, &answer.model, usage).await? };
        let reasons: Vec<&str> = verdict.rejected.iter().map(|r| rejection_reason(&r.why)).collect();
        // Counts and reasons only: the sentences may repeat what the customer wrote.
        tracing::info!(
            conversation = %conversation,
            supported = verdict.supported.len(),
            rejected = verdict.rejected.len(),
            reasons = ?reasons,
            "grounding gate"
        );
        let answer_text = verdict.answer();
        let passed = answer_text.is_some();
        let (text, mut metadata) = match answer_text {
            Some(text) => {
                let citations = grounded::citations(&verdict.cited(), hits);
                (text, json!({ "answered_by": ANSWERED_BY_KNOWLEDGE_LLM, "grounded": true, "citations": citations }))
            }
            None => extractive(hits),
        };
        metadata["grounding"] = json!({
            "passed": passed,
            "supported": verdict.supported.len(),
            "rejected": verdict.rejected,
        });
        metadata["model"] = json!(answer.model);
        metadata["usage"] =
            json!({ "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens });
        metadata["cost_micros"] = json!(cost_micros);
        metadata["cached"] = json!(answer.cached);
        if estimated {
            metadata["usage"]["estimated"] = json!(true);
        }
        if let Some(route) = &answer.route {
            metadata["route"] = json!(route);
        }
        Ok((text, metadata))
    }

    async fn record_usage(&self, conversation: ConversationId, model: &str, usage: Usage) -> Result<i64, AnswerError> {
        let Some(answer_model) = &self.model else { return Ok(0) };
        record_usage(self.store.as_ref(), &answer_model.stack, &self.tenant, conversation, model, usage).await
    }
}

/// Adds one model call to the usage ledger, priced by `[llm.prices]`; returns its cost.
pub(crate) async fn record_usage(
    store: &dyn Store,
    stack: &LlmStack,
    tenant: &TenantId,
    conversation: ConversationId,
    model: &str,
    usage: Usage,
) -> Result<i64, AnswerError> {
    let cost_micros = stack.prices().cost_micros(model, usage);
    let record = UsageRecord {
        tenant_id: tenant.clone(),
        conversation_id: Some(conversation),
        model: model.to_owned(),
        prompt_tokens: saturating_i64(usage.prompt_tokens),
        completion_tokens: saturating_i64(usage.completion_tokens),
        cost_micros,
        created_at: concierge_core::now(),
    };
    store.record_usage(&record).await.map_err(|e| AnswerError(e.to_string()))?;
    crate::telemetry::usage(model, tenant.as_str(), usage.prompt_tokens, usage.completion_tokens, cost_micros);
    Ok(cost_micros)
}

impl KnowledgeAnswerer {
    /// Why the model's `answer` to `chat` must not be sent, if it must not: it repeats the
    /// request's instructions, or names a tool (a knowledge answer calls none).
    fn held_back(&self, chat: &ChatRequest, answer: &str) -> Option<concierge_guard::Blocked> {
        let instructions: Vec<&str> = chat
            .messages
            .iter()
            .filter(|m| m.role == concierge_llm::MessageRole::System)
            .map(|m| m.content.as_str())
            .collect();
        let tools: Vec<&str> = self.tools.iter().map(String::as_str).collect();
        concierge_guard::check_answer(
            answer,
            &concierge_guard::OutputRules { instructions: &instructions, tools: &tools, used: &[] },
        )
    }
}

/// Drops the passages that read as prompt injection; returns how many.
fn withhold_injected(hits: &mut Vec<Hit>) -> usize {
    let before = hits.len();
    hits.retain(|hit| !concierge_guard::detector().assess(&hit.text).is_attack());
    before - hits.len()
}

/// The best passage quoted, with citations; says so honestly when nothing was found.
/// `hits` are in prompt order, the most relevant last.
fn extractive(hits: &[Hit]) -> (String, Value) {
    let best_first: Vec<Hit> = hits.iter().rev().cloned().collect();
    let answer = ExtractiveAnswer::from_hits(&best_first);
    let metadata = json!({
        "answered_by": ANSWERED_BY_KNOWLEDGE,
        "grounded": answer.grounded,
        "citations": answer.citations,
    });
    (answer.text, metadata)
}

/// The model's answer to `request` within the model's budget, or the kind of failure. A
/// blank answer is a failure too: quoting the passages serves the customer better.
async fn ask(model: &AnswerModel, request: &ChatRequest, signals: &RouteSignals) -> Result<ModelAnswer, &'static str> {
    let answer = tokio::time::timeout(model.budget, model.stack.answer(request, signals))
        .await
        .unwrap_or_else(|_| Err(LlmError::Timeout { provider: "model".into(), after: model.budget }))
        .map_err(|error| grounded::error_kind(&error))?;
    if answer.response.text.trim().is_empty() {
        return Err("empty_answer");
    }
    Ok(answer)
}

/// Usage counted here, for a provider that did not report it.
pub(crate) fn estimate_usage(model: &str, request: &ChatRequest, answer: &str) -> Usage {
    let counter = counter_for(model);
    Usage { prompt_tokens: counter.count_request(request) as u64, completion_tokens: counter.count(answer) as u64 }
}

fn rejection_reason(why: &Unsupported) -> &'static str {
    match why {
        Unsupported::Figure { .. } => "figure",
        Unsupported::Wording { .. } => "wording",
        Unsupported::Polarity => "polarity",
    }
}

fn saturating_i64(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}
