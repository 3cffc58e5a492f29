//! The configured models as the agent's [`AgentModel`]: native function calling through the
//! same stack that phrases knowledge-base answers (routing, retries, fallbacks, cache),
//! each call within its budget and written to the usage ledger.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierge_agent::support::{AgentModel, AgentModelAnswer, AgentModelCall, AnswerError};
use concierge_core::TenantId;
use concierge_llm::routing::RouteSignals;
use concierge_llm::LlmError;
use concierge_store::Store;
use serde_json::json;

use crate::answer::{estimate_usage, record_usage};
use crate::grounded::error_kind;
use crate::llm::LlmStack;

pub struct StackAgentModel {
    store: Arc<dyn Store>,
    stack: Arc<LlmStack>,
    tenant: TenantId,
    budget: Duration,
}

impl StackAgentModel {
    /// Each call to `stack` gets `budget`, retries and fallbacks included.
    pub fn new(store: Arc<dyn Store>, stack: Arc<LlmStack>, tenant: TenantId, budget: Duration) -> Self {
        StackAgentModel { store, stack, tenant, budget }
    }
}

#[async_trait]
impl AgentModel for StackAgentModel {
    async fn next(&self, call: AgentModelCall<'_>) -> Result<AgentModelAnswer, AnswerError> {
        let last_user = call.request.messages.iter().rev().find(|m| m.role == concierge_llm::MessageRole::User);
        let signals = RouteSignals {
            intent: call.intent.map(str::to_owned),
            confidence: call.confidence,
            intents_detected: 1,
            prompt_chars: call.request.messages.iter().map(|m| m.content.chars().count()).sum(),
            text: last_user.map(|m| m.content.clone()).unwrap_or_default(),
        };
        let answer = tokio::time::timeout(self.budget, self.stack.answer(call.request, &signals))
            .await
            .unwrap_or_else(|_| Err(LlmError::Timeout { provider: "model".into(), after: self.budget }))
            .map_err(|error| AnswerError(format!("tool model: {}", error_kind(&error))))?;
        let (usage, estimated) = match answer.response.usage {
            Some(usage) => (usage, false),
            None => (estimate_usage(&answer.model, call.request, &answer.response.text), true),
        };
        let cost_micros = if answer.cached {
            0
        } else {
            record_usage(self.store.as_ref(), &self.stack, &self.tenant, call.conversation, &answer.model, usage)
                .await?
        };
        let mut metadata = json!({
            "model": answer.model,
            "usage": { "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens },
            "cost_micros": cost_micros,
            "cached": answer.cached,
        });
        if estimated {
            metadata["usage"]["estimated"] = json!(true);
        }
        if let Some(route) = &answer.route {
            metadata["route"] = json!(route);
        }
        Ok(AgentModelAnswer { response: answer.response, metadata })
    }
}
