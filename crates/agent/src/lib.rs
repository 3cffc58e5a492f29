//! Concierge's support agent: the support graph (`support`) and what it is made of. The router (which intent a message expresses,
//! with calibrated confidence, out-of-scope and clarifying thresholds), the tool layer (tools declared in
//! configuration, their arguments extracted by pattern and validated by JSON Schema, called
//! over HTTP (JSON or SOAP/XML), and every call written to the audit log) and the grounding
//! gate every generated answer passes before a customer sees it.
//!
//! Invariant: the system executes tools, never a model; no call leaves without validated
//! arguments, and none leaves without an audit record.

pub mod golden;
pub mod grounding;
pub mod router;
pub mod support;
pub mod tools;

pub use grounding::{Evidence, GroundingGate, Verdict};
pub use router::{IntentSpec, LlmRouting, Router, RouterConfig, RouterError, Routing};
pub use support::{AgentConfig, AgentEvent, AgentParts, Answerer, SupportAgent, TurnInput, TurnOutcome};
pub use tools::{BackendSpec, CallContext, Risk, ToolCallResult, ToolConfigError, ToolError, ToolRegistry, ToolSpec};
