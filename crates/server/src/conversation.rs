//! The conversation service: create conversations, take a customer's message, store it,
//! answer it, store the answer. HTTP handlers only call into here.

use std::sync::Arc;
use std::time::Instant;

use concierge_agent::{CallContext, ToolRegistry};
use concierge_core::{
    Conversation, ConversationId, ConversationStatus, Message, MessageId, MessageText, Role, TenantId,
};
use concierge_retrieval::{ExtractiveAnswer, KeywordIndex};
use concierge_store::{NewMessage, Store};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Which path produced an answer, recorded on every assistant message as `answered_by`.
pub const ANSWERED_BY_KNOWLEDGE: &str = "knowledge_base_keyword";
pub const ANSWERED_BY_TOOL: &str = "tool_lookup";

pub struct ConversationService {
    store: Arc<dyn Store>,
    knowledge: Option<Arc<KeywordIndex>>,
    tools: Arc<ToolRegistry>,
    tenant: TenantId,
    top_k: usize,
    max_message_chars: usize,
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
        knowledge: Option<Arc<KeywordIndex>>,
        tools: Arc<ToolRegistry>,
        tenant: TenantId,
        top_k: usize,
        max_message_chars: usize,
    ) -> Self {
        Self { store, knowledge, tools, tenant, top_k, max_message_chars }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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
        let (text, mut metadata) = match self.tools.find_lookup(text.as_str()) {
            Some((spec, args)) => {
                let name = spec.name.clone();
                let ctx = CallContext { tenant: self.tenant.clone(), conversation: id, turn: message.seq, step: 0 };
                self.answer_with_tool(&ctx, &name, args).await?
            }
            None => self.answer_from_knowledge(text.as_str())?,
        };
        metadata["latency_ms"] = json!(started.elapsed().as_secs_f64() * 1000.0);
        let reply = self.append(id, Role::Assistant, text, metadata).await?;
        Ok(Exchange { conversation_id: id, message, reply })
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

    /// Quotes the knowledge base, with citations.
    fn answer_from_knowledge(&self, question: &str) -> Result<(String, Value), ApiError> {
        let hits = match &self.knowledge {
            Some(index) => index.search(question, self.top_k).map_err(|e| ApiError::Internal(e.to_string()))?,
            None => Vec::new(),
        };
        let answer = ExtractiveAnswer::from_hits(&hits);
        let metadata = json!({
            "answered_by": ANSWERED_BY_KNOWLEDGE,
            "grounded": answer.grounded,
            "citations": answer.citations,
        });
        Ok((answer.text, metadata))
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
