//! Counting tokens before a call: to check a prompt fits a context window, to estimate a
//! call's cost, and to account for usage when a provider does not report it.
//!
//! `TiktokenCounter` is exact for OpenAI's models: the BPE ranks of its encodings are
//! compiled into the binary, so counting never touches the network. Providers without a
//! public tokenizer get `ApproxCounter`, an estimate from the length of the text. A local
//! model counts with its own vocabulary by implementing `TokenCounter` itself.
//!
//! Invariant: counting is pure; the same text always gives the same count, and reported
//! usage, when a provider gives it, always wins over a count made here.

use std::sync::Arc;

use serde_json::json;
use tiktoken_rs::CoreBPE;

use crate::types::{ChatMessage, ChatRequest, MessageRole, ToolDefinition};

/// Tokens that frame every message of a chat prompt (`<|start|>role … <|end|>`), on top of
/// its role and content, as OpenAI documents for its chat formats.
pub const TOKENS_PER_MESSAGE: usize = 3;

/// Tokens that prime the answer (`<|start|>assistant<|message|>`), counted once per request.
pub const REPLY_PRIMING_TOKENS: usize = 3;

/// Counts the tokens a text or a whole request takes for one model.
pub trait TokenCounter: Send + Sync {
    /// Tokens of `text`, read as plain text: special-token markers written in it (such as
    /// `<|endoftext|>`) are counted as the characters they are, as a provider reads them
    /// in a message.
    fn count(&self, text: &str) -> usize;

    /// Tokens of the whole prompt of `request`: each message's role, content, tool calls
    /// and tool-call id plus [`TOKENS_PER_MESSAGE`], each tool definition as its JSON, and
    /// [`REPLY_PRIMING_TOKENS`]. Exact for messages with an exact counter; providers render
    /// tool definitions in their own internal format, so those are an estimate within a
    /// few tokens per tool. Cost: one `count` per piece.
    fn count_request(&self, request: &ChatRequest) -> usize {
        let messages: usize = request.messages.iter().map(|message| message_tokens(self, message)).sum();
        let tools: usize = request.tools.iter().map(|tool| self.count(&tool_json(tool))).sum();
        messages + tools + REPLY_PRIMING_TOKENS
    }
}

/// Tokens of one message, framing included.
fn message_tokens<C: TokenCounter + ?Sized>(counter: &C, message: &ChatMessage) -> usize {
    let calls: usize = message
        .tool_calls
        .iter()
        .map(|call| counter.count(&call.name) + counter.count(&call.arguments.to_string()))
        .sum();
    let call_id = message.tool_call_id.as_deref().map_or(0, |id| counter.count(id));
    TOKENS_PER_MESSAGE + counter.count(role_name(message.role)) + counter.count(&message.content) + calls + call_id
}

fn role_name(role: MessageRole) -> &'static str {
    match role {
        MessageRole::System => "system",
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
        MessageRole::Tool => "tool",
    }
}

/// A tool definition as OpenAI-compatible APIs receive it.
fn tool_json(tool: &ToolDefinition) -> String {
    json!({ "type": "function", "function": {
        "name": tool.name, "description": tool.description, "parameters": tool.parameters } })
    .to_string()
}

/// The BPE encodings OpenAI's chat models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GPT-4 and GPT-3.5 Turbo; also the guess for unknown OpenAI-compatible models.
    Cl100kBase,
    /// GPT-4o, GPT-4.1, GPT-4.5, GPT-5 and the `o` reasoning models.
    O200kBase,
}

impl Encoding {
    /// The encoding of an OpenAI model name (without the `openai/` prefix). Names not
    /// known to use o200k get cl100k: most OpenAI-compatible servers run models whose
    /// token counts are closer to it than to a character estimate. Cost: a few prefix
    /// comparisons.
    pub fn for_model(model: &str) -> Self {
        const O200K_FAMILIES: [&str; 6] = ["gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "codex-mini"];
        const REASONING: [&str; 3] = ["o1", "o3", "o4"];
        let reasoning = REASONING.iter().any(|family| model == *family || model.starts_with(&format!("{family}-")));
        if reasoning || O200K_FAMILIES.iter().any(|family| model.starts_with(family)) {
            Encoding::O200kBase
        } else {
            Encoding::Cl100kBase
        }
    }

    /// The encoder, built from the ranks compiled into the binary on first use (tens of
    /// milliseconds, once per process) and shared after that.
    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        }
    }
}

/// Exact token counts for OpenAI's models, with tiktoken's encodings.
///
/// Cost: linear in the text; the first use of an encoding in a process builds it.
#[derive(Debug, Clone, Copy)]
pub struct TiktokenCounter {
    encoding: Encoding,
}

impl TiktokenCounter {
    /// A counter for `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        Self { encoding }
    }

    /// A counter for an OpenAI model name (without the `openai/` prefix); see
    /// [`Encoding::for_model`].
    pub fn for_model(model: &str) -> Self {
        Self::new(Encoding::for_model(model))
    }

    /// The encoding this counter uses.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
}

impl TokenCounter for TiktokenCounter {
    fn count(&self, text: &str) -> usize {
        self.encoding.bpe().encode_ordinary(text).len()
    }
}

/// An estimate for providers without a public tokenizer (Anthropic): one token per 3.5
/// characters, rounded up.
///
/// Used only to decide before a call (does the prompt fit, roughly what will it cost) and
/// to account for a call whose provider did not report usage; whenever usage is reported,
/// the reported numbers are the ones recorded. English prose runs at about four characters
/// per token, so 3.5 errs towards counting more, which is the safe side for a context
/// window. Cost: one pass over the characters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproxCounter;

impl TokenCounter for ApproxCounter {
    fn count(&self, text: &str) -> usize {
        // ceil(chars / 3.5) in integers: ceil(2 × chars / 7).
        (2 * text.chars().count()).div_ceil(7)
    }
}

/// The counter for a model id `provider/model`, as `ChatModel::id` gives it: tiktoken for
/// `openai/…`, the estimate for `anthropic/…`, for `local/…` (a loaded local model counts
/// exactly with its own vocabulary; use it when it is at hand) and for any other provider.
/// Cost: one allocation.
pub fn counter_for(model_id: &str) -> Arc<dyn TokenCounter> {
    match model_id.split_once('/') {
        Some(("openai", model)) => Arc::new(TiktokenCounter::for_model(model)),
        _ => Arc::new(ApproxCounter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCall;

    #[test]
    fn cl100k_counts_match_tiktoken() {
        let cl100k = TiktokenCounter::new(Encoding::Cl100kBase);
        assert_eq!(cl100k.count("hello world"), 2, "`hello` and ` world`");
        // OpenAI's cookbook: [83, 1609, 5963, 374, 2294, 0] — t|ikt|oken| is| great|!
        assert_eq!(cl100k.count("tiktoken is great!"), 6);
        assert_eq!(cl100k.count(""), 0);
    }

    #[test]
    fn o200k_counts_match_tiktoken() {
        let o200k = TiktokenCounter::new(Encoding::O200kBase);
        assert_eq!(o200k.count("hello world"), 2);
        assert_eq!(o200k.count("tiktoken is great!"), 6);
    }

    #[test]
    fn special_token_markers_in_text_are_plain_text() {
        let cl100k = TiktokenCounter::new(Encoding::Cl100kBase);
        assert!(cl100k.count("<|endoftext|>") > 1, "not the single special token");
    }

    #[test]
    fn models_get_their_encoding() {
        for model in ["gpt-4o-mini-2024-07-18", "gpt-4o", "gpt-4.1-nano", "o1", "o3-mini", "o4-mini-2025-04-16"] {
            assert_eq!(Encoding::for_model(model), Encoding::O200kBase, "{model}");
        }
        for model in ["gpt-4-0613", "gpt-4", "gpt-3.5-turbo-0125", "qwen2.5-7b-instruct", "o1abc"] {
            assert_eq!(Encoding::for_model(model), Encoding::Cl100kBase, "{model}");
        }
    }

    #[test]
    fn the_estimate_is_characters_over_three_and_a_half_rounded_up() {
        assert_eq!(ApproxCounter.count(""), 0);
        assert_eq!(ApproxCounter.count("a"), 1);
        assert_eq!(ApproxCounter.count("1234567"), 2);
        assert_eq!(ApproxCounter.count("12345678"), 3);
        assert_eq!(ApproxCounter.count("ééééééé"), 2, "characters, not bytes");
    }

    #[test]
    fn a_request_counts_framing_roles_contents_and_priming() {
        let cl100k = TiktokenCounter::new(Encoding::Cl100kBase);
        let request = ChatRequest { messages: vec![ChatMessage::user("hello world")], ..Default::default() };
        // 3 framing + `user` (1) + `hello world` (2) + 3 priming.
        assert_eq!(cl100k.count_request(&request), 9);
        let two = ChatRequest {
            messages: vec![ChatMessage::system("hello world"), ChatMessage::user("hello world")],
            ..Default::default()
        };
        // `system` is one token too.
        assert_eq!(cl100k.count_request(&two), 3 + 1 + 2 + 3 + 1 + 2 + 3);
    }

    #[test]
    fn tools_and_tool_calls_add_to_the_request() {
        let counter = TiktokenCounter::new(Encoding::Cl100kBase);
        let tool = ToolDefinition {
            name: "get_order".into(),
            description: "Look up an order".into(),
            parameters: json!({ "type": "object", "properties": { "order_id": { "type": "string" } } }),
        };
        let bare = ChatRequest { messages: vec![ChatMessage::user("Where is A-10024?")], ..Default::default() };
        let with_tool = ChatRequest { tools: vec![tool.clone()], ..bare.clone() };
        assert_eq!(counter.count_request(&with_tool), counter.count_request(&bare) + counter.count(&tool_json(&tool)));

        let mut call = ChatMessage::assistant("");
        call.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "get_order".into(),
            arguments: json!({ "order_id": "A-1" }),
        });
        let followed = ChatRequest { messages: vec![call, ChatMessage::tool_result("c1", "{}")], ..bare.clone() };
        assert!(counter.count_request(&followed) > 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS + 4);
    }

    #[test]
    fn counters_are_chosen_by_provider() {
        let text = "The quick brown fox jumps over the lazy dog.";
        assert_eq!(
            counter_for("openai/gpt-4o-mini-2024-07-18").count(text),
            TiktokenCounter::for_model("gpt-4o").count(text)
        );
        assert_eq!(counter_for("anthropic/claude-3-5-haiku-20241022").count(text), ApproxCounter.count(text));
        assert_eq!(counter_for("local/qwen2.5-coder-0.5b-instruct-q8_0-mix").count(text), ApproxCounter.count(text));
        assert_eq!(counter_for("no-provider").count(text), ApproxCounter.count(text));
    }
}
