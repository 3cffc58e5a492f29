//! What one turn of the support graph carries from node to node, and checkpoints after each.

use std::collections::{BTreeMap, VecDeque};

use concierge_core::{ConversationId, Message, TenantId};
use concierge_llm::ToolCall;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The state of one turn: the customer's message, what the conversation already holds, the
/// router's decision, and the reply being put together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnState {
    pub tenant: TenantId,
    pub conversation: ConversationId,
    /// The sequence number of the customer's message.
    pub turn: i64,
    pub message: String,
    /// The company's reference for the customer, when the conversation has one.
    pub customer: Option<String>,
    pub memory: Memory,
    /// The router's decision, as recorded on the reply.
    pub routing: Option<Value>,
    /// The request being handled; `tasks` holds the ones after it (a message naming two
    /// intents is handled one intent at a time).
    pub task: Option<Task>,
    pub tasks: VecDeque<Task>,
    /// Times the current task went back to the router.
    pub hops: u32,
    /// Tool calls made this turn.
    pub tool_steps: u32,
    pub action: Action,
    pub escalation: Option<Escalation>,
    /// One part per task handled, in order.
    pub replies: Vec<ReplyPart>,
    /// How many of `replies` the customer has already been sent (before an approval pause).
    pub sent: usize,
    /// Native function calling: the current task's calls the model made, with their
    /// outcomes, in order.
    #[serde(default)]
    pub native: Vec<NativeStep>,
    /// The model's calls not made yet: the one being made first, then the others it asked
    /// for in the same answer.
    #[serde(default)]
    pub native_queue: VecDeque<ToolCall>,
    /// What each of the current task's calls to the model cost (model, usage, cost).
    #[serde(default)]
    pub native_model: Vec<Value>,
    /// The result of the current action's lookup, once made.
    #[serde(default)]
    pub lookup: Option<Value>,
    /// The check of the message for prompt injection, when it found some: score, signals
    /// and what was done (`refused` or `flagged`).
    #[serde(default)]
    pub guard: Option<Value>,
}

impl TurnState {
    pub fn new(tenant: TenantId, conversation: ConversationId, turn: i64, message: String) -> Self {
        TurnState {
            tenant,
            conversation,
            turn,
            message,
            customer: None,
            memory: Memory::default(),
            routing: None,
            task: None,
            tasks: VecDeque::new(),
            hops: 0,
            tool_steps: 0,
            action: Action::Undecided,
            escalation: None,
            replies: Vec::new(),
            sent: 0,
            native: Vec::new(),
            native_queue: VecDeque::new(),
            native_model: Vec::new(),
            lookup: None,
            guard: None,
        }
    }
}

impl TurnState {
    /// The current task's intent, its confidence and its specialist, when it names one.
    pub fn intent(&self) -> Option<(&str, f32, &str)> {
        match self.task.as_ref().map(|t| &t.kind) {
            Some(TaskKind::Intent { intent, confidence, specialist }) => Some((intent, *confidence, specialist)),
            _ => None,
        }
    }
}

/// What the conversation remembers, rebuilt from its stored messages at the start of a turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The last turns verbatim, oldest first (the current message excluded).
    pub window: Vec<Message>,
    /// What happened before the window, one line per turn.
    pub summary: Option<String>,
    /// Facts the customer gave, by tool parameter (`order_id` → `A-10032`); the latest
    /// mention wins, however long ago it was.
    pub facts: BTreeMap<String, String>,
    /// What the last reply asked the customer for, if it asked.
    pub awaiting: Option<Awaiting>,
    /// Clarifying questions in a row just before this turn.
    pub clarifications: u32,
    /// Replies of this conversation that could not help (a failed tool, nothing found).
    pub failures: u32,
    /// The ticket a person already holds this conversation under, if it was handed over.
    pub ticket: Option<String>,
}

/// A question the agent asked and the customer may be answering now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Awaiting {
    pub intent: String,
    pub specialist: String,
    pub tool: String,
    pub missing: Vec<String>,
}

/// One request in a message: an intent for a specialist, a choice to clarify, or nothing
/// the company handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The part of the message it is about (the whole message when it names one intent).
    pub text: String,
    pub kind: TaskKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskKind {
    Intent {
        intent: String,
        confidence: f32,
        specialist: String,
    },
    Clarify {
        candidates: Vec<String>,
    },
    OutOfScope,
    /// No router configured, or it failed: answered from the knowledge base.
    Unrouted,
}

/// What the specialist decided for the current task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Undecided,
    /// Call a tool with these (validated) arguments.
    Call {
        tool: String,
        arguments: Value,
        approval: bool,
    },
    /// A tool is needed but the customer has not given these arguments yet.
    Ask {
        tool: String,
        missing: Vec<String>,
    },
    /// A tool was called (or refused by an approver); reply from its result.
    Called {
        tool: String,
        arguments: Value,
        outcome: CallOutcome,
    },
    /// Answer from the knowledge base.
    Answer,
    /// The specialist's fixed reply for the intent.
    Reply {
        text: String,
    },
    /// Ask which of two things the customer means.
    Clarify {
        candidates: Vec<String>,
    },
    /// Out of scope: the knowledge base may still know; else decline politely.
    Decline,
    /// Not this specialist's request: back to the router for `intent`.
    HandBack {
        intent: String,
    },
    /// Native function calling: the model's answer from the results of the calls in
    /// `TurnState::native`, still to pass the grounding gate.
    Phrase {
        text: String,
    },
}

/// One call the model made, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeStep {
    pub call: ToolCall,
    pub outcome: CallOutcome,
}

/// How a tool call ended, as the reply needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallOutcome {
    Done {
        ok: bool,
        data: Value,
        latency_ms: i64,
        approved_by: Option<String>,
    },
    Denied {
        by: String,
        reason: Option<String>,
    },
    Expired,
    /// The arguments did not pass the schema (a defect of extraction, never sent).
    Refused {
        problems: Vec<String>,
    },
}

/// Why and how the conversation went to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub reasons: Vec<String>,
    /// The ticket's reference in the company's helpdesk, or Concierge's own ticket id when
    /// the helpdesk could not be reached.
    pub ticket: Option<String>,
}

/// One part of the reply, with what produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyPart {
    pub text: String,
    /// Carries at least `answered_by`; citations, tool, grounding, usage as they apply.
    pub metadata: Value,
}

impl ReplyPart {
    pub fn new(text: impl Into<String>, answered_by: &str) -> Self {
        ReplyPart { text: text.into(), metadata: serde_json::json!({ "answered_by": answered_by, "citations": [] }) }
    }

    pub fn answered_by(&self) -> Option<&str> {
        self.metadata["answered_by"].as_str()
    }
}
