//! The conversation service: create conversations, take a customer's message, store it,
//! answer it, store the answer. HTTP handlers only call into here.
//!
//! With a router configured, every message is first routed (its intent, how sure the
//! router is, or out of scope); the routing is recorded on the reply and given to the model
//! router, and a message out of scope that the knowledge base knows nothing of gets the
//! out-of-scope reply. A routing failure never fails the message: it is logged and the
//! message answered unrouted.
//!
//! A message whose lookup tool's arguments are in it is answered from the tool's result.
//! Any other is answered from the knowledge base: by the model from the passages found
//! when a model is configured, as far as the grounding gate finds its sentences supported
//! by them; else (and whenever the model fails or nothing it said is supported) by quoting
//! the best passage. A model failure never fails the message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_agent::grounding::Unsupported;
use concierge_agent::{CallContext, Router, Routing, ToolRegistry};
use concierge_core::{
    Conversation, ConversationId, ConversationStatus, Message, MessageId, MessageText, Role, TenantId, UsageRecord,
};
use concierge_llm::routing::RouteSignals;
use concierge_llm::{counter_for, ChatRequest, LlmError, Usage};
use concierge_retrieval::{ExtractiveAnswer, Hit, SearchRequest};
use concierge_store::{NewMessage, Store};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::grounded;
use crate::knowledge::{check_document_id, DocumentSummary, IngestOutcome, Knowledge, NewDocument, SOURCE_API};
use crate::llm::{LlmStack, ModelAnswer};

/// Which path produced an answer, recorded on every assistant message as `answered_by`.
pub const ANSWERED_BY_KNOWLEDGE: &str = "knowledge_base_quote";
pub const ANSWERED_BY_KNOWLEDGE_LLM: &str = "knowledge_base_llm";
pub const ANSWERED_BY_TOOL: &str = "tool_lookup";
pub const ANSWERED_BY_OUT_OF_SCOPE: &str = "out_of_scope";

/// What a customer is told when the message is out of scope and the knowledge base has
/// nothing on it.
pub const OUT_OF_SCOPE_REPLY: &str = "Sorry, that is not something I can help with here. \
I can answer questions about what we offer, or pass you to a person if you ask for one.";

pub struct ConversationService {
    store: Arc<dyn Store>,
    knowledge: Arc<Knowledge>,
    tools: Arc<ToolRegistry>,
    tenant: TenantId,
    max_message_chars: usize,
    model: Option<AnswerModel>,
    router: Option<Arc<Router>>,
}

/// The model that phrases knowledge-base answers, and how long it may take for one.
struct AnswerModel {
    stack: Arc<LlmStack>,
    budget: Duration,
}

/// A customer's message and the answer to it.
#[derive(Debug, Serialize)]
pub struct Exchange {
    pub conversation_id: ConversationId,
    pub message: Message,
    pub reply: Message,
}

/// A conversation with every message in order.
#[derive(Debug, Serialize)]
pub struct Transcript {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

impl ConversationService {
    pub fn new(
        store: Arc<dyn Store>,
        knowledge: Arc<Knowledge>,
        tools: Arc<ToolRegistry>,
        tenant: TenantId,
        max_message_chars: usize,
    ) -> Self {
        Self { store, knowledge, tools, tenant, max_message_chars, model: None, router: None }
    }

    /// Routes every message with `router` before answering it.
    pub fn with_router(mut self, router: Arc<Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// Lets `stack` phrase knowledge-base answers, each within `budget` (retries and
    /// fallbacks included); past it the answer is quoted from the passages instead.
    pub fn with_model(mut self, stack: Arc<LlmStack>, budget: Duration) -> Self {
        self.model = Some(AnswerModel { stack, budget });
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn knowledge(&self) -> &Arc<Knowledge> {
        &self.knowledge
    }

    /// The tenant this process serves.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub async fn create(&self, customer_ref: Option<String>, channel: &str) -> Result<Conversation, ApiError> {
        let now = concierge_core::now();
        let conversation = Conversation {
            id: ConversationId::new(),
            tenant_id: self.tenant.clone(),
            customer_ref,
            channel: channel.to_owned(),
            status: ConversationStatus::Open,
            created_at: now,
            updated_at: now,
        };
        self.store.create_conversation(&conversation).await?;
        Ok(conversation)
    }

    /// Stores the customer's message first, so it is never lost, then answers it and stores
    /// the answer.
    pub async fn post_message(&self, id: ConversationId, content: &str) -> Result<Exchange, ApiError> {
        let text = MessageText::parse(content, self.max_message_chars)?;
        self.require(id).await?;
        let message = self.append(id, Role::User, text.as_str().to_owned(), json!({})).await?;
        let started = Instant::now();
        let routing = self.route(id, text.as_str()).await;
        let (text, mut metadata) = match self.tools.find_lookup(text.as_str()) {
            Some((spec, args)) => {
                let name = spec.name.clone();
                let ctx = CallContext { tenant: self.tenant.clone(), conversation: id, turn: message.seq, step: 0 };
                self.answer_with_tool(&ctx, &name, args).await?
            }
            None => self.answer_from_knowledge(id, &message, text.as_str(), routing.as_ref()).await?,
        };
        if let Some(routing) = &routing {
            metadata["routing"] = json!(routing);
        }
        metadata["latency_ms"] = json!(started.elapsed().as_secs_f64() * 1000.0);
        let reply = self.append(id, Role::Assistant, text, metadata).await?;
        Ok(Exchange { conversation_id: id, message, reply })
    }

    /// Adds or replaces a knowledge-base document of this tenant.
    pub async fn put_document(&self, body: NewDocument) -> Result<(IngestOutcome, DocumentSummary), ApiError> {
        let article = body.into_article()?;
        let id = article.id.clone();
        let outcome = self.knowledge.ingest(&self.tenant, article, SOURCE_API).await?;
        let document = self.document(&id).await?;
        Ok((outcome, document))
    }

    pub async fn documents(&self) -> Result<Vec<DocumentSummary>, ApiError> {
        Ok(self.knowledge.list(&self.tenant).await?)
    }

    pub async fn document(&self, id: &str) -> Result<DocumentSummary, ApiError> {
        check_document_id(id)?;
        self.knowledge.get(&self.tenant, id).await?.ok_or_else(|| ApiError::not_found(format!("document {id}")))
    }

    pub async fn delete_document(&self, id: &str) -> Result<(), ApiError> {
        check_document_id(id)?;
        if self.knowledge.delete(&self.tenant, id).await? {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("document {id}")))
        }
    }

    pub async fn transcript(&self, id: ConversationId) -> Result<Transcript, ApiError> {
        let conversation = self.require(id).await?;
        let messages = self.store.messages(&self.tenant, id).await?;
        Ok(Transcript { conversation, messages })
    }

    async fn require(&self, id: ConversationId) -> Result<Conversation, ApiError> {
        self.store
            .conversation(&self.tenant, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("conversation {id}")))
    }

    async fn append(
        &self,
        id: ConversationId,
        role: Role,
        content: String,
        metadata: Value,
    ) -> Result<Message, ApiError> {
        let new = NewMessage {
            id: MessageId::new(),
            conversation_id: id,
            tenant_id: self.tenant.clone(),
            role,
            content,
            metadata,
        };
        Ok(self.store.append_message(new).await?)
    }

    /// The router's decision, if there is a router and it could decide.
    async fn route(&self, id: ConversationId, text: &str) -> Option<Routing> {
        let router = self.router.as_ref()?;
        match router.route(text).await {
            Ok(routing) => Some(routing),
            Err(error) => {
                tracing::warn!(conversation = %id, %error, "routing failed; answering unrouted");
                None
            }
        }
    }

    /// Answers from the knowledge base: phrased by the model from the passages found when
    /// there is a model and something was found, quoted otherwise. A model failure is
    /// recorded as `llm_error` and the answer quoted. Out of scope with nothing found, the
    /// out-of-scope reply.
    async fn answer_from_knowledge(
        &self,
        id: ConversationId,
        message: &Message,
        question: &str,
        routing: Option<&Routing>,
    ) -> Result<(String, Value), ApiError> {
        let request = SearchRequest::new(self.tenant.clone(), question);
        let results = self.knowledge.search(&request).await.map_err(ApiError::from)?;
        // In prompt order: the most relevant passage last.
        let hits = self.knowledge.base().context(&results, &self.knowledge.config().context);
        let retrieval = json!({
            "mode": results.mode,
            "not_found": results.not_found,
            "best_similarity": results.best_similarity,
            "passages": hits.len(),
            "ms": results.timings.total_ms,
        });
        if hits.is_empty() && matches!(routing, Some(Routing::OutOfScope { .. })) {
            let metadata = json!({ "answered_by": ANSWERED_BY_OUT_OF_SCOPE, "citations": [], "retrieval": retrieval });
            return Ok((OUT_OF_SCOPE_REPLY.to_owned(), metadata));
        }
        let signals = route_signals(routing);
        let (text, mut metadata) = self.answer_from_passages(id, message, question, &hits, signals).await?;
        metadata["retrieval"] = retrieval;
        Ok((text, metadata))
    }

    /// The answer from `hits` (prompt order, most relevant last).
    async fn answer_from_passages(
        &self,
        id: ConversationId,
        message: &Message,
        question: &str,
        hits: &[Hit],
        signals: RouteSignals,
    ) -> Result<(String, Value), ApiError> {
        let Some(model) = self.model.as_ref().filter(|_| !hits.is_empty()) else {
            return Ok(extractive(hits));
        };
        let history = self.history(id, message.seq).await?;
        let request = grounded::request(hits, &history, question, model.stack.max_answer_tokens());
        let signals = RouteSignals {
            prompt_chars: request.messages.iter().map(|m| m.content.chars().count()).sum(),
            text: question.to_owned(),
            ..signals
        };
        match ask(model, &request, &signals).await {
            Ok(answer) => self.model_answered(id, hits, &request, answer).await,
            Err(kind) => {
                tracing::warn!(conversation = %id, llm_error = kind, "model failed; quoting the knowledge base");
                let (text, mut metadata) = extractive(hits);
                metadata["llm_error"] = json!(kind);
                Ok((text, metadata))
            }
        }
    }

    /// The conversation's messages before `seq`, oldest first.
    async fn history(&self, id: ConversationId, seq: i64) -> Result<Vec<Message>, ApiError> {
        let mut messages = self.store.messages(&self.tenant, id).await?;
        messages.retain(|m| m.seq < seq);
        Ok(messages)
    }

    /// The model's answer as far as the grounding gate lets it through, with citations,
    /// model, route, usage and cost. When no sentence of it rests on a passage the best
    /// passage is quoted instead; either way the call's usage is recorded in the ledger,
    /// unless the answer came from the cache, which spent nothing.
    async fn model_answered(
        &self,
        id: ConversationId,
        hits: &[Hit],
        request: &ChatRequest,
        answer: ModelAnswer,
    ) -> Result<(String, Value), ApiError> {
        let raw = answer.response.text.trim();
        let verdict = grounded::gate(raw, answer.response.finish, hits);
        let (usage, estimated) = match answer.response.usage {
            Some(usage) => (usage, false),
            None => (estimate_usage(&answer.model, request, raw), true),
        };
        let cost_micros = if answer.cached { 0 } else { self.record_usage(id, &answer.model, usage).await? };
        let reasons: Vec<&str> = verdict.rejected.iter().map(|r| rejection_reason(&r.why)).collect();
        // Counts and reasons only: the sentences may repeat what the customer wrote.
        tracing::info!(
            conversation = %id,
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

    /// Adds one model call to the usage ledger, priced by `[llm.prices]`; returns its cost.
    async fn record_usage(&self, id: ConversationId, model: &str, usage: Usage) -> Result<i64, ApiError> {
        let prices = self.model.as_ref().map(|m| m.stack.prices());
        let cost_micros = prices.map_or(0, |prices| prices.cost_micros(model, usage));
        let record = UsageRecord {
            tenant_id: self.tenant.clone(),
            conversation_id: Some(id),
            model: model.to_owned(),
            prompt_tokens: saturating_i64(usage.prompt_tokens),
            completion_tokens: saturating_i64(usage.completion_tokens),
            cost_micros,
            created_at: concierge_core::now(),
        };
        self.store.record_usage(&record).await?;
        Ok(cost_micros)
    }

    /// Calls a lookup tool whose arguments were found in the message and answers from its
    /// result through the tool's answer template.
    async fn answer_with_tool(&self, ctx: &CallContext, name: &str, args: Value) -> Result<(String, Value), ApiError> {
        let result = self
            .tools
            .call(self.store.as_ref(), ctx, name, args.clone())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let text = self.tools.render_answer(name, &args, &result).unwrap_or_else(|| {
            "I couldn't put that information into words just now. Please ask for a human and they will help.".into()
        });
        let metadata = json!({
            "answered_by": ANSWERED_BY_TOOL,
            "grounded": result.is_ok(),
            "citations": [],
            "tool": { "name": name, "arguments": args, "outcome": result.outcome, "latency_ms": result.latency_ms },
        });
        Ok((text, metadata))
    }
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

/// What the model router learns from the intent router: the intent and how sure it was, or
/// that the message holds several.
fn route_signals(routing: Option<&Routing>) -> RouteSignals {
    let (intent, confidence, intents_detected) = match routing {
        Some(Routing::Intent { intent, .. }) => (Some(intent.intent.clone()), Some(intent.confidence), 1),
        Some(Routing::Several { intents }) => (None, None, intents.len()),
        Some(Routing::Clarify { candidates }) => (None, Some(candidates[0].confidence), 1),
        Some(Routing::OutOfScope { nearest, .. }) => (None, Some(nearest.confidence), 0),
        None => (None, None, 0),
    };
    RouteSignals { intent, confidence, intents_detected, ..RouteSignals::default() }
}

/// Usage counted here, for a provider that did not report it.
fn estimate_usage(model: &str, request: &ChatRequest, answer: &str) -> Usage {
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
