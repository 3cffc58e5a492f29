//! The support graph: one customer turn from message to reply.
//!
//! ```text
//! load_context → classify → specialist ⇄ tools
//!                   ↑           │
//!                   └─hand back─┤
//!                               ↓
//!                       check_escalation → escalate ─┐
//!                               │                    ↓
//!                               └──────────────→ respond → (next request: specialist) | end
//! ```
//!
//! Every node checkpoints through the Store, so a turn interrupted by a crash resumes where
//! it was, and a risky tool pauses the turn until an operator decides (the approval's id is
//! the interrupt's). Specialists, their prompts, tools and intent → tool actions come from
//! `[agent]` in configuration: adding one is a configuration change.
//!
//! Invariant: the agent decides, the system executes. Routing is the router's (a strong
//! model's, for what `[router] llm` hands it); arguments come from the customer's words
//! through each parameter's declared pattern, or, with native function calling, from the
//! model but only as values the conversation or a result holds; either way they are
//! validated before any call. Every model-written sentence passes the grounding gate.

mod config;
mod escalation;
mod memory;
mod native;
mod nodes;
mod routing;
mod state;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use concierge_core::{Approval, ApprovalStatus, ConversationId, Message, TenantId};
use concierge_graph::{Graph, GraphError, GraphEvent, Outcome, Resume, Run, StoreCheckpointer};
use concierge_llm::{ChatRequest, ChatResponse};
use concierge_store::Store;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use config::{
    ActionSpec, AgentConfig, EscalationConfig, FunctionCalling, GuardConfig, LookupSpec, MemoryConfig, OnInjection,
    Prompt, SpecialistSpec,
};
pub use escalation::EscalationPolicy;
pub use memory::remember;
pub use state::{Action, Awaiting, CallOutcome, Escalation, Memory, NativeStep, ReplyPart, Task, TaskKind, TurnState};

use crate::{IntentSpec, Router, ToolRegistry};

/// What a turn tells whoever follows it, as it happens (DESIGN.md "Events on the stream").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    Meta { intent: Option<String>, confidence: Option<f32>, specialist: Option<String> },
    ToolStarted { name: String, display: Option<String> },
    ToolFinished { name: String, outcome: String, latency_ms: i64 },
    ApprovalRequired { approval_id: String, tool: String, arguments: Value },
    Escalated { ticket: String },
}

/// What answers from the knowledge base: search, phrase, ground, cite. The server provides
/// it (it owns the knowledge base and the models).
#[async_trait]
pub trait Answerer: Send + Sync {
    async fn answer(&self, request: AnswerRequest<'_>) -> Result<ReplyPart, AnswerError>;
}

/// A question for the knowledge base, with what the agent knows around it.
pub struct AnswerRequest<'a> {
    pub conversation: ConversationId,
    pub question: &'a str,
    /// Earlier messages, oldest first.
    pub history: &'a [Message],
    /// The specialist's prompt, when a specialist asks.
    pub prompt: Option<&'a Prompt>,
    /// Out of scope: answer only if the knowledge base knows, else decline.
    pub out_of_scope: bool,
    pub intent: Option<&'a str>,
    pub confidence: Option<f32>,
    pub intents_detected: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AnswerError(pub String);

/// A model strong enough to be trusted with the agent's choices when configured to make
/// them: which tools to call (native function calling) and which intent an unclear message
/// expresses. The server provides it (it owns the models, their budget and the usage
/// ledger).
#[async_trait]
pub trait AgentModel: Send + Sync {
    /// The model's answer to `request`: calls of the tools it offers, or its text.
    async fn next(&self, call: AgentModelCall<'_>) -> Result<AgentModelAnswer, AnswerError>;
}

/// One request to an [`AgentModel`], with what it is for.
pub struct AgentModelCall<'a> {
    pub conversation: ConversationId,
    pub request: &'a ChatRequest,
    pub intent: Option<&'a str>,
    pub confidence: Option<f32>,
}

/// The model's answer, and what the call cost: `model`, `usage` {prompt_tokens,
/// completion_tokens}, `cost_micros`, and whatever else the server records.
pub struct AgentModelAnswer {
    pub response: ChatResponse,
    pub metadata: Value,
}

/// Why the agent could not be built from its configuration. Names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("agent.specialists: `{0}` is declared twice")]
    DuplicateSpecialist(String),
    #[error("agent.specialists.{specialist}.prompt: {problem}")]
    Prompt { specialist: String, problem: String },
    #[error("agent.specialists.{specialist}: {problem}")]
    Specialist { specialist: String, problem: String },
    #[error("agent.escalation.{key}: {problem}")]
    Escalation { key: &'static str, problem: String },
    #[error("agent: {0}")]
    Graph(#[from] concierge_graph::BuildError),
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("approval {0} has no paused turn to resume")]
    NoRun(String),
    #[error("approval {0} is still pending")]
    Undecided(String),
}

/// A customer's message to handle.
pub struct TurnInput {
    pub tenant: TenantId,
    pub conversation: ConversationId,
    /// The stored message's sequence number.
    pub turn: i64,
    pub message: String,
    pub customer: Option<String>,
}

/// The reply to send, and whether the turn is paused for an approval.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    pub text: String,
    pub metadata: Value,
    /// The approval the turn now waits for.
    pub awaiting_approval: Option<String>,
}

/// The specialist as configured, with its prompt read.
pub(crate) struct Specialist {
    pub(crate) spec: SpecialistSpec,
    pub(crate) prompt: Prompt,
}

/// What the nodes share.
pub(crate) struct Deps {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tools: Arc<ToolRegistry>,
    pub(crate) router: Option<Arc<Router>>,
    pub(crate) answerer: Arc<dyn Answerer>,
    /// The model that chooses tools, when function calling is native.
    pub(crate) tool_model: Option<Arc<dyn AgentModel>>,
    /// The model that routes what the router is unsure of (or everything), when asked to.
    pub(crate) route_model: Option<Arc<dyn AgentModel>>,
    pub(crate) specialists: BTreeMap<String, Specialist>,
    pub(crate) intents: BTreeMap<String, IntentSpec>,
    pub(crate) escalation: EscalationPolicy,
    pub(crate) config: AgentConfig,
    /// The compiled `when` of every action's lookup, by `specialist.intent`.
    pub(crate) lookup_when: BTreeMap<String, regex::Regex>,
    /// The argument templates of every action, by `specialist.intent.argument`.
    pub(crate) templates: minijinja::Environment<'static>,
}

/// The support agent: the graph and what its nodes need.
pub struct SupportAgent {
    graph: Graph<TurnState, AgentEvent>,
    deps: Arc<Deps>,
}

/// The pieces the agent works with.
pub struct AgentParts {
    pub store: Arc<dyn Store>,
    pub tools: Arc<ToolRegistry>,
    pub router: Option<Arc<Router>>,
    pub answerer: Arc<dyn Answerer>,
    /// A model to choose tools and their arguments (native function calling); without one
    /// arguments are extracted by pattern.
    pub tool_model: Option<Arc<dyn AgentModel>>,
    /// A model to route messages as `[router] llm` says; without one the router decides alone.
    pub route_model: Option<Arc<dyn AgentModel>>,
    /// The intents the router was trained on (for their specialists and descriptions).
    pub intents: Vec<IntentSpec>,
}

impl SupportAgent {
    /// Checks `config` against the tools and intents and builds the graph. Prompt paths are
    /// read relative to the working directory.
    pub fn new(config: AgentConfig, parts: AgentParts) -> Result<Self, AgentConfigError> {
        let mut specialists = BTreeMap::new();
        let mut templates = minijinja::Environment::new();
        let mut lookup_when = BTreeMap::new();
        for spec in &config.specialists {
            let bad = |problem: String| AgentConfigError::Specialist { specialist: spec.name.clone(), problem };
            if specialists.contains_key(&spec.name) {
                return Err(AgentConfigError::DuplicateSpecialist(spec.name.clone()));
            }
            let prompt = Prompt::read(&spec.prompt)
                .map_err(|problem| AgentConfigError::Prompt { specialist: spec.name.clone(), problem })?;
            for tool in &spec.tools {
                if parts.tools.spec(tool).is_none() {
                    return Err(bad(format!("tools: `{tool}` is not a declared tool")));
                }
            }
            for (intent, action) in &spec.actions {
                if !spec.tools.contains(&action.tool) {
                    return Err(bad(format!("actions.{intent}: `{}` is not among its tools", action.tool)));
                }
                if !parts.intents.is_empty() && !parts.intents.iter().any(|i| &i.name == intent) {
                    return Err(bad(format!("actions.{intent}: no such intent in the intents file")));
                }
                if let Some(lookup) = &action.lookup {
                    let low_risk = parts.tools.spec(&lookup.tool).is_some_and(|t| t.risk == crate::Risk::Low);
                    if !spec.tools.contains(&lookup.tool) || !low_risk {
                        return Err(bad(format!(
                            "actions.{intent}.lookup: `{}` is not a low-risk tool among its tools",
                            lookup.tool
                        )));
                    }
                    if let Some(when) = &lookup.when {
                        let compiled =
                            regex::Regex::new(when).map_err(|e| bad(format!("actions.{intent}.lookup.when: {e}")))?;
                        lookup_when.insert(format!("{}.{intent}", spec.name), compiled);
                    }
                }
                for (argument, source) in &action.arguments {
                    let name = format!("{}.{intent}.{argument}", spec.name);
                    templates
                        .add_template_owned(name, source.clone())
                        .map_err(|e| bad(format!("actions.{intent}.arguments.{argument}: {e}")))?;
                }
            }
            for (intent, reply) in &spec.replies {
                templates
                    .add_template_owned(format!("{}.reply.{intent}", spec.name), reply.clone())
                    .map_err(|e| bad(format!("replies.{intent}: {e}")))?;
            }
            specialists.insert(spec.name.clone(), Specialist { spec: spec.clone(), prompt });
        }
        if let Some(tool) = &config.escalation.ticket_tool {
            if parts.tools.spec(tool).is_none() {
                return Err(AgentConfigError::Escalation {
                    key: "ticket_tool",
                    problem: format!("`{tool}` is not a declared tool"),
                });
            }
        }
        let deps = Arc::new(Deps {
            store: parts.store,
            tools: parts.tools,
            router: parts.router,
            answerer: parts.answerer,
            tool_model: parts.tool_model,
            route_model: parts.route_model,
            specialists,
            intents: parts.intents.into_iter().map(|i| (i.name.clone(), i)).collect(),
            escalation: EscalationPolicy::new(config.escalation.clone()),
            config,
            lookup_when,
            templates,
        });
        let graph = nodes::graph(&deps)?;
        Ok(SupportAgent { graph, deps })
    }

    /// The graph as a Mermaid flowchart.
    pub fn mermaid(&self) -> String {
        self.graph.mermaid()
    }

    /// Handles one customer message: the reply, or the first part of it and the approval
    /// the turn waits for. Events go to `events` as they happen.
    pub async fn handle(
        &self,
        input: TurnInput,
        events: Option<mpsc::Sender<GraphEvent<AgentEvent>>>,
    ) -> Result<TurnOutcome, AgentError> {
        let checkpointer =
            StoreCheckpointer::new(Arc::clone(&self.deps.store), input.tenant.clone(), input.conversation);
        let run = Run { id: run_id(input.conversation, input.turn), checkpointer: &checkpointer, events };
        let mut state = TurnState::new(input.tenant, input.conversation, input.turn, input.message);
        state.customer = input.customer;
        let outcome = self.graph.start(&run, state).await?;
        Ok(self.outcome(outcome, 0))
    }

    /// Continues the turn that waits on `approval`, now decided: the approved call is made
    /// (once) or the refusal explained; returns what the customer is told next.
    pub async fn resume_approval(
        &self,
        approval: &Approval,
        events: Option<mpsc::Sender<GraphEvent<AgentEvent>>>,
    ) -> Result<TurnOutcome, AgentError> {
        if approval.run_id.is_empty() {
            return Err(AgentError::NoRun(approval.id.to_string()));
        }
        let value = match approval.status {
            ApprovalStatus::Pending => return Err(AgentError::Undecided(approval.id.to_string())),
            ApprovalStatus::Approved => {
                json!({ "approved": true, "by": approval.decided_by, "reason": approval.reason })
            }
            ApprovalStatus::Denied => {
                json!({ "approved": false, "by": approval.decided_by, "reason": approval.reason })
            }
            ApprovalStatus::Expired => json!({ "expired": true }),
        };
        let checkpointer =
            StoreCheckpointer::new(Arc::clone(&self.deps.store), approval.tenant_id.clone(), approval.conversation_id);
        let run = Run { id: approval.run_id.clone(), checkpointer: &checkpointer, events };
        let outcome = self.graph.resume(&run, Resume { interrupt_id: approval.id.to_string(), value }).await?;
        let sent = match &outcome {
            Outcome::Finished { state, .. } | Outcome::Interrupted { state, .. } => state.sent,
        };
        Ok(self.outcome(outcome, sent))
    }

    /// Continues a turn whose process died mid-run, from its last checkpoint.
    pub async fn recover(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        turn: i64,
    ) -> Result<TurnOutcome, AgentError> {
        let checkpointer = StoreCheckpointer::new(Arc::clone(&self.deps.store), tenant, conversation);
        let run = Run { id: run_id(conversation, turn), checkpointer: &checkpointer, events: None };
        let outcome = self.graph.recover(&run).await?;
        Ok(self.outcome(outcome, 0))
    }

    /// The reply from the parts after the first `from`.
    fn outcome(&self, outcome: Outcome<TurnState>, from: usize) -> TurnOutcome {
        match outcome {
            Outcome::Finished { state, .. } => {
                let (text, metadata) = nodes::compose(&state, from);
                TurnOutcome { text, metadata, awaiting_approval: None }
            }
            Outcome::Interrupted { state, interrupt } => {
                let (text, metadata) = nodes::compose(&state, from);
                TurnOutcome { text, metadata, awaiting_approval: Some(interrupt.id) }
            }
        }
    }
}

/// A turn's run id: one run per customer message.
pub fn run_id(conversation: ConversationId, turn: i64) -> String {
    format!("{conversation}:{turn}")
}
