//! The conversation service: create conversations, take a customer's message, store it,
//! have the support agent answer it, store the answer; operators' approval decisions;
//! documents in and out. HTTP handlers only call into here.
//!
//! The message is stored before anything else happens, so it is never lost; whatever
//! fails after that, the customer still gets an honest reply.

use std::sync::Arc;
use std::time::Instant;

use concierge_agent::support::AgentError;
use concierge_agent::{SupportAgent, TurnInput};
use concierge_core::{
    Approval, ApprovalId, Conversation, ConversationId, ConversationStatus, Feedback, Message, MessageId, MessageText,
    Role, TenantId, Ticket, TicketStatus,
};
use concierge_graph::{GraphError, GraphEvent};
use concierge_store::{NewMessage, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::PrivacyConfig;
use crate::error::ApiError;
use crate::hub::{Follower, Hub};
use crate::knowledge::{check_document_id, DocumentSummary, IngestOutcome, Knowledge, NewDocument, SOURCE_API};
use crate::stats::{Stats, StatsReport, TurnOutcome};

pub struct ConversationService {
    store: Arc<dyn Store>,
    knowledge: Arc<Knowledge>,
    agent: Arc<SupportAgent>,
    tenant: TenantId,
    max_message_chars: usize,
    stats: Arc<Stats>,
    agent_name: String,
    hub: Arc<Hub>,
    privacy: PrivacyConfig,
}

/// A customer's message and the answer to it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Exchange {
    pub conversation_id: ConversationId,
    pub message: Message,
    pub reply: Message,
}

/// A customer's message, stored, and what answering it needs.
struct Turn {
    agent: Arc<SupportAgent>,
    store: Arc<dyn Store>,
    tenant: TenantId,
    message: Message,
    input: TurnInput,
    started: Instant,
    stats: Arc<Stats>,
    hub: Arc<Hub>,
    privacy: PrivacyConfig,
}

impl Turn {
    /// Lets the agent answer (its events to `events`) and stores the reply, with the
    /// turn's latency; an agent that fails gets the customer an honest reply instead.
    async fn answer(
        self,
        events: Option<mpsc::Sender<GraphEvent<concierge_agent::AgentEvent>>>,
    ) -> Result<Message, ApiError> {
        let id = self.input.conversation;
        let (text, mut metadata) = match self.agent.handle(self.input, events).await {
            Ok(outcome) => (outcome.text, outcome.metadata),
            Err(error) => agent_failed(id, &error),
        };
        finish(&self.stats, &mut metadata, self.started);
        let place = Place { store: self.store.as_ref(), hub: &self.hub, tenant: &self.tenant, privacy: &self.privacy };
        place.append(id, Role::Assistant, text, metadata).await
    }
}

/// A turn's reply, given its latency (`metadata.latency_ms`) and counted in the live figures.
fn finish(stats: &Stats, metadata: &mut Value, started: Instant) {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    metadata["latency_ms"] = json!(latency_ms);
    let answered_by = metadata["answered_by"].as_str().unwrap_or("");
    let outcome = TurnOutcome::of(answered_by);
    let cost = metadata["cost_micros"].as_i64().unwrap_or(0);
    stats.record_turn(concierge_core::now(), outcome, latency_ms, cost);
    let intent = metadata["intent"].as_str().unwrap_or("");
    crate::telemetry::turn(outcome.name(), answered_by, intent, latency_ms / 1000.0);
}

/// One event of a streamed turn: its type (`meta`, `token`, `done`, …) and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnEvent {
    pub kind: String,
    pub data: Value,
}

/// The longest reference a client may give: a customer's, an approver's, a frame's `ref`.
pub const MAX_REF_CHARS: usize = 128;

/// Events a streamed turn holds for a client slower than the turn.
const STREAM_BUFFER: usize = 64;

/// The reply as the pieces a stream sends: its sentences (with the space after each) and
/// the blank lines between its parts, so that the pieces joined are the reply exactly.
fn tokens(reply: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for span in concierge_retrieval::sentence_spans(reply) {
        if span.end > start {
            pieces.push(reply[start..span.end].to_owned());
            start = span.end;
        }
    }
    if start < reply.len() {
        pieces.push(reply[start..].to_owned());
    }
    pieces
}

/// A conversation with every message in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Transcript {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

/// An operator's decision on an approval.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub approve: bool,
    /// The operator's name. The audit log records it with the credential that decided:
    /// `name [key:label (prefix)]`, or the credential alone.
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A decided approval and what the customer was told after it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Decided {
    pub approval: Approval,
    pub reply: Option<Message>,
}

impl ConversationService {
    pub fn new(
        store: Arc<dyn Store>,
        knowledge: Arc<Knowledge>,
        agent: SupportAgent,
        tenant: TenantId,
        max_message_chars: usize,
        agent_name: String,
        privacy: PrivacyConfig,
    ) -> Self {
        Self {
            store,
            knowledge,
            agent: Arc::new(agent),
            tenant,
            max_message_chars,
            stats: Arc::default(),
            agent_name,
            hub: Arc::default(),
            privacy,
        }
    }

    pub fn agent_name(&self) -> &str {
        &self.agent_name
    }

    pub fn max_message_chars(&self) -> usize {
        self.max_message_chars
    }

    /// Stores a new conversation's earlier messages, brought by a client that kept them
    /// itself (`metadata.imported`), so the agent remembers them.
    pub async fn import_history(&self, id: ConversationId, history: &[(Role, String)]) -> Result<(), ApiError> {
        for (role, text) in history {
            let text: String = text.chars().take(self.max_message_chars).collect();
            self.append(id, *role, text, json!({ "imported": true })).await?;
        }
        Ok(())
    }

    /// The last hour's figures of this process.
    pub fn stats(&self) -> StatsReport {
        self.stats.report(concierge_core::now())
    }

    /// Up to `limit` conversations, newest first, before `before` when given.
    pub async fn conversations(
        &self,
        limit: u32,
        before: Option<ConversationId>,
    ) -> Result<Vec<Conversation>, ApiError> {
        Ok(self.store.list_conversations(&self.tenant, limit, before).await?)
    }

    pub async fn tickets(&self, status: Option<TicketStatus>, limit: u32) -> Result<Vec<Ticket>, ApiError> {
        Ok(self.store.list_tickets(&self.tenant, status, limit).await?)
    }

    /// Records a rating of the assistant's reply `message`, if `may_reach` lets the caller
    /// reach its conversation; rating it again replaces the first rating.
    pub async fn rate(
        &self,
        message: MessageId,
        rating: i16,
        comment: Option<String>,
        may_reach: impl FnOnce(ConversationId) -> Result<(), ApiError>,
    ) -> Result<Feedback, ApiError> {
        let rated = self
            .store
            .message(&self.tenant, message)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("message {message}")))?;
        may_reach(rated.conversation_id)?;
        if rated.role != Role::Assistant {
            return Err(ApiError::InvalidBody("only the assistant's replies can be rated".into()));
        }
        let feedback = Feedback {
            message_id: message,
            tenant_id: self.tenant.clone(),
            conversation_id: rated.conversation_id,
            rating,
            // The customer's own words, kept like their messages.
            comment: comment
                .map(|text| concierge_guard::scanner().redact(&text, self.privacy.for_stored(false)).into_owned()),
            created_at: concierge_core::now(),
        };
        self.store.add_feedback(&feedback).await?;
        crate::telemetry::feedback(rating);
        self.stats.record_rating(feedback.created_at, rating);
        Ok(feedback)
    }

    pub async fn feedback(&self, limit: u32) -> Result<Vec<Feedback>, ApiError> {
        Ok(self.store.list_feedback(&self.tenant, limit).await?)
    }

    /// The support agent's graph, as a Mermaid flowchart.
    pub fn agent_graph(&self) -> String {
        self.agent.mermaid()
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

    /// Opens a conversation; a `customer_ref` must be 1 to [`MAX_REF_CHARS`] characters.
    pub async fn create(&self, customer_ref: Option<String>, channel: &str) -> Result<Conversation, ApiError> {
        if customer_ref.as_ref().is_some_and(|r| r.is_empty() || r.chars().count() > MAX_REF_CHARS) {
            return Err(ApiError::InvalidBody(format!("customer_ref must be 1 to {MAX_REF_CHARS} characters")));
        }
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

    /// Stores the customer's message first, so it is never lost, then lets the agent answer
    /// it and stores the answer. An agent that fails still gets the customer an honest
    /// reply, and the failure is logged and recorded on it. The turn runs as a task of its
    /// own: a request that gives up at its deadline leaves it to finish, and its reply is
    /// still stored in the conversation.
    pub async fn post_message(&self, id: ConversationId, content: &str) -> Result<Exchange, ApiError> {
        let turn = self.begin_turn(id, content).await?;
        let message = turn.message.clone();
        let task = tokio::spawn(turn.answer(None));
        let reply = task.await.map_err(|e| ApiError::Internal(format!("the turn's task failed: {e}")))??;
        Ok(Exchange { conversation_id: id, message, reply })
    }

    /// Checks and stores the customer's message: the turn that answers it, not started yet.
    async fn begin_turn(&self, id: ConversationId, content: &str) -> Result<Turn, ApiError> {
        let text = MessageText::parse(content, self.max_message_chars)?;
        let conversation = self.require(id).await?;
        let message = self.append(id, Role::User, text.as_str().to_owned(), json!({})).await?;
        tracing::debug!(conversation = %id, turn = message.seq, content = %message.content, "customer message stored");
        // The agent answers what was stored: what it keeps (checkpoints, memory, tickets)
        // holds nothing the store may not.
        let input = TurnInput {
            tenant: self.tenant.clone(),
            conversation: id,
            turn: message.seq,
            message: message.content.clone(),
            customer: conversation.customer_ref,
        };
        Ok(Turn {
            agent: Arc::clone(&self.agent),
            store: Arc::clone(&self.store),
            tenant: self.tenant.clone(),
            message,
            input,
            started: Instant::now(),
            stats: Arc::clone(&self.stats),
            hub: Arc::clone(&self.hub),
            privacy: self.privacy,
        })
    }

    /// Checks and stores a customer's message to be answered later (by a job).
    pub async fn accept(&self, id: ConversationId, content: &str) -> Result<Message, ApiError> {
        Ok(self.begin_turn(id, content).await?.message)
    }

    /// The reply to a stored customer message: the one already stored after it, if any
    /// (the message was answered before, by this or an earlier attempt), else the turn is
    /// run (carried on from its checkpoints, if an earlier attempt left some) and its reply
    /// stored. However often it is asked, a message is answered once.
    /// `retried` marks a reply made by a later attempt (`metadata.recovered`).
    pub async fn answer_stored(
        &self,
        id: ConversationId,
        message: MessageId,
        retried: bool,
    ) -> Result<Message, ApiError> {
        let conversation = self.require(id).await?;
        let messages = self.store.messages(&self.tenant, id).await?;
        let at = messages
            .iter()
            .position(|m| m.id == message && m.role == Role::User)
            .ok_or_else(|| ApiError::not_found(format!("customer message {message}")))?;
        if let Some(reply) = messages[at + 1..].iter().take_while(|m| m.role != Role::User).next() {
            return Ok(reply.clone());
        }
        self.answer_left(&conversation, &messages[at], retried).await
    }

    /// [`post_message`](Self::post_message), told as it happens: the stored message, then
    /// the turn's events (DESIGN.md "Events on the stream"): `meta`, `tool_started`,
    /// `tool_finished`, `approval_required`, `escalated` as the agent reaches them, then the
    /// reply as `token`s (sentence by sentence: a sentence is released only once the
    /// grounding gate has passed it), its `citation`s and `done`. Bad input is refused
    /// before anything is streamed. A client that goes away stops only the sending: the
    /// turn runs on and its reply is stored.
    pub async fn post_message_streamed(
        &self,
        id: ConversationId,
        content: &str,
    ) -> Result<mpsc::Receiver<TurnEvent>, ApiError> {
        let turn = self.begin_turn(id, content).await?;
        let (out, events) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            let (message, started) = (turn.message.clone(), turn.started);
            let (graph_events, mut from_graph) = mpsc::channel(STREAM_BUFFER);
            let forward = {
                let out = out.clone();
                let message_id = message.id;
                tokio::spawn(async move {
                    // Drained to the end whoever listens, so the agent never waits on a
                    // client that has gone.
                    let mut listening = true;
                    while let Some(event) = from_graph.recv().await {
                        let GraphEvent::Node(event) = event else { continue };
                        let mut data = serde_json::to_value(&event).unwrap_or_default();
                        let kind = data["type"].as_str().unwrap_or("event").to_owned();
                        if kind == "meta" {
                            data["conversation_id"] = json!(id);
                            data["message_id"] = json!(message_id);
                        }
                        if listening {
                            listening = out.send(TurnEvent { kind, data }).await.is_ok();
                        }
                    }
                })
            };
            let stored = turn.answer(Some(graph_events)).await;
            let _ = forward.await;
            let reply = match stored {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::error!(conversation = %id, %error, "the reply could not be stored");
                    let (_, code) = error.status_and_code();
                    let data = json!({ "code": code, "message": "the reply could not be stored; the message is kept" });
                    let _ = out.send(TurnEvent { kind: "error".into(), data }).await;
                    return;
                }
            };
            let mut first_token = None;
            for piece in tokens(&reply.content) {
                first_token.get_or_insert_with(|| {
                    let elapsed = started.elapsed();
                    crate::telemetry::first_token(elapsed.as_secs_f64());
                    elapsed
                });
                if out.send(TurnEvent { kind: "token".into(), data: json!({ "text": piece }) }).await.is_err() {
                    return;
                }
            }
            for citation in reply.metadata["citations"].as_array().into_iter().flatten() {
                if out.send(TurnEvent { kind: "citation".into(), data: citation.clone() }).await.is_err() {
                    return;
                }
            }
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            let meta = &reply.metadata;
            let done = json!({
                "message_id": reply.id,
                "user_message_id": message.id,
                "answered_by": meta["answered_by"],
                "intent": meta["intent"],
                "usage": meta["usage"],
                "cost_micros": meta["cost_micros"],
                "ttft_ms": first_token.map(ms),
                "latency_ms": ms(started.elapsed()),
            });
            let _ = out.send(TurnEvent { kind: "done".into(), data: done }).await;
        });
        Ok(events)
    }

    /// The customer messages a previous process stored but did not answer (it died
    /// mid-turn), among the `recent` newest conversations, each with its conversation. Read
    /// before serving, so a message that arrives afterwards is never taken for one of them.
    pub async fn unanswered(&self, recent: u32) -> Result<Vec<(Conversation, Message)>, ApiError> {
        let mut out = Vec::new();
        for conversation in self.store.list_conversations(&self.tenant, recent, None).await? {
            let mut messages = self.store.messages(&self.tenant, conversation.id).await?;
            if let Some(last) = messages.pop().filter(|m| m.role == Role::User) {
                out.push((conversation, last));
            }
        }
        Ok(out)
    }

    /// Answers messages found by [`unanswered`](Self::unanswered): a turn with checkpoints
    /// carries on from the last one, a turn without starts again. Returns how many were
    /// answered.
    pub async fn answer_unanswered(&self, unanswered: Vec<(Conversation, Message)>) -> Result<usize, ApiError> {
        let mut answered = 0;
        for (conversation, last) in unanswered {
            let reply = self.answer_left(&conversation, &last, true).await?;
            tracing::info!(conversation = %conversation.id, turn = last.seq, reply = %reply.id, "answered a message left unanswered");
            answered += 1;
        }
        Ok(answered)
    }

    /// Answers a stored customer message that has no reply: a turn with checkpoints
    /// carries on from the last one, a turn without starts again. `recovered` is recorded
    /// on the reply.
    async fn answer_left(
        &self,
        conversation: &Conversation,
        last: &Message,
        recovered: bool,
    ) -> Result<Message, ApiError> {
        let started = Instant::now();
        let resumed = self.agent.recover(self.tenant.clone(), conversation.id, last.seq).await;
        let outcome = match resumed {
            Err(AgentError::Graph(GraphError::UnknownRun(_))) => {
                let input = TurnInput {
                    tenant: self.tenant.clone(),
                    conversation: conversation.id,
                    turn: last.seq,
                    message: last.content.clone(),
                    customer: conversation.customer_ref.clone(),
                };
                self.agent.handle(input, None).await
            }
            other => other,
        };
        let (text, mut metadata) = match outcome {
            Ok(outcome) => (outcome.text, outcome.metadata),
            Err(error) => agent_failed(conversation.id, &error),
        };
        if recovered {
            metadata["recovered"] = json!(true);
        }
        finish(&self.stats, &mut metadata, started);
        self.append(conversation.id, Role::Assistant, text, metadata).await
    }

    /// The approvals waiting for an operator, oldest first.
    pub async fn pending_approvals(&self) -> Result<Vec<Approval>, ApiError> {
        Ok(self.store.pending_approvals(&self.tenant).await?)
    }

    /// Records an operator's decision on an approval, then continues the paused turn: the
    /// approved call is made (once: the decision is settled by the store, and the call by
    /// its idempotency key) or the refusal explained, and what the customer is told is
    /// added to the conversation.
    pub async fn decide_approval(
        &self,
        id: ApprovalId,
        decision: Decision,
        approver: &str,
    ) -> Result<Decided, ApiError> {
        let approval = self
            .store
            .decide_approval(&self.tenant, id, decision.approve, approver, decision.reason.as_deref())
            .await
            .map_err(|error| approval_error(id, error))?;
        let reply = self.continue_after(&approval).await?;
        Ok(Decided { approval, reply })
    }

    /// The turn that waited on `approval` carried on, and its reply stored.
    async fn continue_after(&self, approval: &Approval) -> Result<Option<Message>, ApiError> {
        let (text, metadata) = match self.agent.resume_approval(approval, None).await {
            Ok(outcome) => (outcome.text, outcome.metadata),
            Err(concierge_agent::support::AgentError::NoRun(_)) => return Ok(None),
            Err(error) => agent_failed(approval.conversation_id, &error),
        };
        if text.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.append(approval.conversation_id, Role::Assistant, text, metadata).await?))
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
        let place = Place { store: self.store.as_ref(), hub: &self.hub, tenant: &self.tenant, privacy: &self.privacy };
        place.append(id, role, content, metadata).await
    }

    /// Follows a conversation: every message stored in it from now on. Unknown
    /// conversations are refused.
    pub async fn follow(&self, id: ConversationId) -> Result<Follower, ApiError> {
        self.require(id).await?;
        Ok(self.hub.follow(id))
    }
}

/// Where a conversation's messages go: the store, the conversation's followers, under the
/// tenant's privacy settings.
struct Place<'a> {
    store: &'a dyn Store,
    hub: &'a Hub,
    tenant: &'a TenantId,
    privacy: &'a PrivacyConfig,
}

impl Place<'_> {
    /// Stores a message, its personal data redacted as `[privacy]` says (the kinds
    /// replaced noted in `metadata.redacted`), and tells the conversation's followers.
    async fn append(
        &self,
        id: ConversationId,
        role: Role,
        content: String,
        mut metadata: Value,
    ) -> Result<Message, ApiError> {
        let reply = role != Role::User;
        let (redacted, found) = concierge_guard::scanner().redact_noting(&content, self.privacy.for_stored(reply));
        let content = if found.is_empty() {
            content
        } else {
            metadata["redacted"] = json!(found);
            crate::telemetry::redacted(if reply { "reply" } else { "stored" }, found);
            redacted.into_owned()
        };
        let new = NewMessage {
            id: MessageId::new(),
            conversation_id: id,
            tenant_id: self.tenant.clone(),
            role,
            content,
            metadata,
        };
        let message = self.store.append_message(new).await?;
        self.hub.tell(&message);
        Ok(message)
    }
}

/// The reply when the agent itself failed: honest, and the message is kept.
fn agent_failed(conversation: ConversationId, error: &AgentError) -> (String, Value) {
    tracing::error!(conversation = %conversation, %error, "the agent failed on a message");
    let text = "Sorry, something went wrong on our side while answering. Your message is saved; please try \
                again in a moment, or ask for a person.";
    (text.to_owned(), json!({ "answered_by": "error", "failed": true, "citations": [] }))
}

/// A decision the store refused, in the API's terms; an unknown approval is named without
/// the tenant the store's message adds.
fn approval_error(id: ApprovalId, error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound { .. } => ApiError::not_found(format!("approval {id}")),
        other => other.into(),
    }
}
