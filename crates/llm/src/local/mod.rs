//! The embedded local model: a GGUF chat model run in-process on the CPU by llama.cpp.
//!
//! One engine thread owns the model and its context and runs every conversation at once as
//! llama.cpp sequences in shared batches (continuous batching). Each sequence keeps the
//! tokens whose keys and values are in the cache, so a new request starts from the longest
//! prefix already computed — the system prompt and tool definitions, and the earlier turns
//! of the same conversation — and only the rest is evaluated.
//!
//! The prompt is the model's own chat template (from the GGUF metadata) rendered with
//! minijinja; tool calls come back in the Hermes format (`<tool_call>{…}</tool_call>`) or as
//! bare JSON, and both are parsed.

mod engine;
mod grammar;
mod hermes;
mod template;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use engine::{EngineStats, LocalModel};
pub use hermes::{parse_tool_calls, ParsedOutput, RawToolCall};
pub use template::ChatTemplate;

/// How to load and run a local model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalModelConfig {
    /// The GGUF file.
    pub path: PathBuf,
    /// The pinned model name recorded on every call, as `local/<model>`.
    pub model: String,
    /// Tokens one conversation may hold: prompt plus answer.
    pub context_tokens: u32,
    /// Conversations evaluated together in one batch.
    pub sequences: u32,
    /// CPU threads; 0 means every core.
    pub threads: u32,
    /// Most tokens evaluated in one step.
    pub batch_tokens: u32,
    /// Requests that may wait for a free sequence; more are refused as rate limited.
    pub queue: usize,
}

impl Default for LocalModelConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("models/qwen2.5-coder-0.5b-instruct-q8_0-mix.gguf"),
            model: "qwen2.5-coder-0.5b-instruct-q8_0-mix".into(),
            context_tokens: 4096,
            sequences: 4,
            threads: 0,
            batch_tokens: 512,
            queue: 64,
        }
    }
}

/// Why a local model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model file {0} does not exist; run scripts/fetch-models")]
    Missing(PathBuf),
    #[error("cannot load {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path} has no usable chat template: {message}")]
    Template { path: PathBuf, message: String },
    #[error("local model setting {key} is {value}; {expected}")]
    Setting { key: &'static str, value: String, expected: &'static str },
}
