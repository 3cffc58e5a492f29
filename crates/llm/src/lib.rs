//! Everything between an agent and a language model: one `ChatModel` interface, the
//! providers behind it, and the resilience around them.
//!
//! A model answers as a stream of `ChatEvent`s: text deltas, tool calls (assembled from
//! their deltas and validated before they are handed out), usage, and how it finished. The
//! non-streaming answer is a fold over that stream, so both paths share every check. A
//! stream that breaks off or cannot be parsed is an error, never a shorter answer.
//!
//! Invariant: nothing here knows about customer support, tenants or storage; a model is
//! given messages and tools and returns events.

pub mod anthropic;
pub mod cache;
mod cost;
mod http;
#[cfg(feature = "local")]
pub mod local;
mod model;
pub mod openai;
pub mod resilience;
pub mod routing;
pub mod tokens;
mod types;

pub use cost::{Price, PriceTable};
pub use model::{collect, ChatModel, EventStream, LlmError};
pub use tokens::{counter_for, ApproxCounter, TiktokenCounter, TokenCounter};
pub use types::{
    ChatEvent, ChatMessage, ChatRequest, ChatResponse, FinishReason, MessageRole, ToolCall, ToolChoice, ToolDefinition,
    Usage,
};
