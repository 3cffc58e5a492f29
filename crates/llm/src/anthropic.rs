//! Anthropic's Messages API (`POST /v1/messages`, streamed) behind `ChatModel`.
//!
//! The request is translated into Anthropic's shape (system prompt apart, tool calls and
//! tool results as content blocks) and the Server-Sent Events of the answer are decoded
//! into `ChatEvent`s. Tool calls are assembled from their `input_json_delta`s and handed
//! out only when their block closes, validated like every provider's.
//!
//! Invariant: this module only translates; sending, failure sorting, SSE framing and tool
//! call validation are `http`'s, shared with the other providers.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{send, sse_events, validated_tool_call};
use crate::model::{ChatModel, EventStream, LlmError};
use crate::types::{ChatEvent, ChatMessage, ChatRequest, FinishReason, MessageRole, ToolChoice, Usage};

/// The API version this module speaks; Anthropic requires it on every request.
const API_VERSION: &str = "2023-06-01";

/// Anthropic has no JSON mode, so JSON mode is asked for in the system prompt.
const JSON_MODE_INSTRUCTION: &str =
    "Answer with a single JSON object and nothing else: no prose, no code fences, no text before or after it.";

/// Where and how to reach Anthropic, and which model to pin.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// The API's root, e.g. `https://api.anthropic.com`; `/v1/messages` is appended.
    pub base_url: String,
    pub api_key: SecretString,
    /// A pinned model id, e.g. `claude-3-5-haiku-20241022`.
    pub model: String,
    /// How long one call may take, from sending the request to the last byte of the answer.
    pub deadline: Duration,
    /// `max_tokens` when the request does not set one; Anthropic requires a limit.
    pub max_tokens_default: u32,
}

/// A Claude model reached through the Messages API. Cheap to share: one connection pool
/// serves every call.
pub struct AnthropicProvider {
    config: AnthropicConfig,
    id: String,
    client: reqwest::Client,
}

impl AnthropicProvider {
    /// Builds the provider and its HTTP client; no request is made.
    pub fn new(config: AnthropicConfig) -> Self {
        let id = format!("anthropic/{}", config.model);
        Self { config, id, client: reqwest::Client::new() }
    }

    fn api_key_header(&self) -> Result<HeaderValue, LlmError> {
        let mut value = HeaderValue::from_str(self.config.api_key.expose_secret()).map_err(|_| LlmError::Rejected {
            provider: self.id.clone(),
            // What the API itself answers to a key it cannot use.
            status: 401,
            message: "the API key is not a valid HTTP header value".into(),
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

#[async_trait::async_trait]
impl ChatModel for AnthropicProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let url = format!("{}/v1/messages", self.config.base_url.trim_end_matches('/'));
        let body = MessagesRequest::new(&self.config, request);
        let http_request = self
            .client
            .post(url)
            .header("x-api-key", self.api_key_header()?)
            .header("anthropic-version", API_VERSION)
            .json(&body);
        let response = send(&self.id, http_request, self.config.deadline).await?;
        let events = sse_events(&self.id, self.config.deadline, response);
        Ok(Box::pin(decode(StreamDecoder::new(self.id.clone(), request.clone()), events)))
    }
}

// ---------------------------------------------------------------------------------------
// The request, in Anthropic's shape.

#[derive(Debug, Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<ContentBlock<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock<'a> {
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: &'a Value },
    ToolResult { tool_use_id: &'a str, content: &'a str },
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireToolChoice<'a> {
    Auto,
    Any,
    Tool { name: &'a str },
}

impl<'a> MessagesRequest<'a> {
    /// `seed` is dropped: the Messages API has none.
    fn new(config: &'a AnthropicConfig, request: &'a ChatRequest) -> Self {
        let offers_tools = request.tool_choice != ToolChoice::None && !request.tools.is_empty();
        let tools = if offers_tools {
            request
                .tools
                .iter()
                .map(|t| WireTool { name: &t.name, description: &t.description, input_schema: &t.parameters })
                .collect()
        } else {
            Vec::new()
        };
        let tool_choice = match &request.tool_choice {
            _ if !offers_tools => None,
            ToolChoice::Auto => Some(WireToolChoice::Auto),
            ToolChoice::Required => Some(WireToolChoice::Any),
            ToolChoice::Tool(name) => Some(WireToolChoice::Tool { name }),
            ToolChoice::None => None,
        };
        Self {
            model: &config.model,
            max_tokens: request.max_tokens.unwrap_or(config.max_tokens_default),
            stream: true,
            system: system_prompt(request),
            messages: wire_messages(&request.messages),
            tools,
            tool_choice,
            temperature: request.temperature,
            stop_sequences: &request.stop,
        }
    }
}

/// All system messages, joined, plus the JSON instruction in JSON mode.
fn system_prompt(request: &ChatRequest) -> Option<String> {
    let mut parts: Vec<&str> =
        request.messages.iter().filter(|m| m.role == MessageRole::System).map(|m| m.content.as_str()).collect();
    if request.json_mode {
        parts.push(JSON_MODE_INSTRUCTION);
    }
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// The conversation without its system messages. Tool results travel as `tool_result`
/// blocks of a user message; consecutive messages of one role are merged into one, which
/// puts the results of parallel tool calls together as the API expects.
fn wire_messages(messages: &[ChatMessage]) -> Vec<WireMessage<'_>> {
    let mut wire: Vec<WireMessage<'_>> = Vec::new();
    for message in messages {
        let (role, blocks) = match message.role {
            MessageRole::System => continue,
            MessageRole::User => ("user", text_block(&message.content).into_iter().collect()),
            MessageRole::Assistant => ("assistant", assistant_blocks(message)),
            MessageRole::Tool => (
                "user",
                vec![ContentBlock::ToolResult {
                    tool_use_id: message.tool_call_id.as_deref().unwrap_or_default(),
                    content: &message.content,
                }],
            ),
        };
        match wire.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => wire.push(WireMessage { role, content: blocks }),
        }
    }
    wire
}

fn assistant_blocks(message: &ChatMessage) -> Vec<ContentBlock<'_>> {
    let calls =
        message.tool_calls.iter().map(|c| ContentBlock::ToolUse { id: &c.id, name: &c.name, input: &c.arguments });
    text_block(&message.content).into_iter().chain(calls).collect()
}

/// The API refuses empty text blocks, e.g. the text of an assistant turn that only called tools.
fn text_block(text: &str) -> Option<ContentBlock<'_>> {
    (!text.is_empty()).then_some(ContentBlock::Text { text })
}

// ---------------------------------------------------------------------------------------
// The answer: Anthropic's stream events, decoded.

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: MessageStartBody,
    },
    ContentBlockStart {
        index: usize,
        content_block: BlockStart,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: ApiError,
    },
    /// Anthropic may add event types; the API's versioning policy says to ignore them.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct MessageStartBody {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    /// Blocks we do not surface, e.g. thinking.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl WireUsage {
    /// Cached prompt tokens are reported apart from `input_tokens`; all of them were read.
    fn prompt_tokens(&self) -> Option<u64> {
        let counts = [self.input_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens];
        counts.iter().any(Option::is_some).then(|| counts.iter().flatten().sum())
    }
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

/// A tool call whose input is still arriving.
#[derive(Debug)]
struct PendingToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// Turns Anthropic's events into `ChatEvent`s, one event at a time.
struct StreamDecoder {
    provider: String,
    request: ChatRequest,
    tool_calls: HashMap<usize, PendingToolCall>,
    usage: Usage,
    finish: Option<FinishReason>,
    finished: bool,
}

impl StreamDecoder {
    fn new(provider: String, request: ChatRequest) -> Self {
        Self { provider, request, tool_calls: HashMap::new(), usage: Usage::default(), finish: None, finished: false }
    }

    fn malformed(&self, message: impl Into<String>) -> LlmError {
        LlmError::MalformedStream { provider: self.provider.clone(), message: message.into() }
    }

    /// Decodes the data of one SSE event, pushing what it yields onto `out`.
    fn on_event(&mut self, data: &str, out: &mut VecDeque<ChatEvent>) -> Result<(), LlmError> {
        let event: StreamEvent =
            serde_json::from_str(data).map_err(|e| self.malformed(format!("unreadable event ({e}): {data}")))?;
        match event {
            StreamEvent::MessageStart { message } => {
                if let Some(prompt) = message.usage.as_ref().and_then(WireUsage::prompt_tokens) {
                    self.usage.prompt_tokens = prompt;
                }
            }
            StreamEvent::ContentBlockStart { index, content_block } => match content_block {
                BlockStart::Text { text } if !text.is_empty() => out.push_back(ChatEvent::TextDelta { text }),
                BlockStart::ToolUse { id, name } => {
                    self.tool_calls.insert(index, PendingToolCall { id, name, arguments: String::new() });
                }
                BlockStart::Text { .. } | BlockStart::Other => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => out.push_back(ChatEvent::TextDelta { text }),
                BlockDelta::InputJsonDelta { partial_json } => match self.tool_calls.get_mut(&index) {
                    Some(call) => call.arguments.push_str(&partial_json),
                    None => return Err(self.malformed(format!("tool input for block {index}, which is no tool call"))),
                },
                BlockDelta::Other => {}
            },
            StreamEvent::ContentBlockStop { index } => {
                if let Some(call) = self.tool_calls.remove(&index) {
                    let call = validated_tool_call(&self.provider, &self.request, call.id, call.name, &call.arguments)?;
                    out.push_back(ChatEvent::ToolCall { call });
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.finish = Some(finish_reason(&reason));
                }
                if let Some(usage) = usage {
                    if let Some(prompt) = usage.prompt_tokens() {
                        self.usage.prompt_tokens = prompt;
                    }
                    if let Some(completion) = usage.output_tokens {
                        self.usage.completion_tokens = completion;
                    }
                }
            }
            StreamEvent::MessageStop => {
                if !self.tool_calls.is_empty() {
                    return Err(self.malformed("the message stopped inside a tool call"));
                }
                let reason = self.finish.ok_or_else(|| self.malformed("the message stopped without a stop_reason"))?;
                out.push_back(ChatEvent::Usage { usage: self.usage });
                out.push_back(ChatEvent::Finish { reason });
                self.finished = true;
            }
            StreamEvent::Error { error } => return Err(self.api_error(error)),
            StreamEvent::Ping | StreamEvent::Unknown => {}
        }
        Ok(())
    }

    /// An error the API reports mid-stream. Overload is what HTTP 529 means before the
    /// stream starts, so it is sorted the same way (and retried).
    fn api_error(&self, error: ApiError) -> LlmError {
        if error.kind == "overloaded_error" {
            LlmError::Server { provider: self.provider.clone(), status: 529, message: error.message }
        } else {
            self.malformed(format!("{}: {}", error.kind, error.message))
        }
    }
}

fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, stop_sequence, and reasons added later: the model ended its turn.
        _ => FinishReason::Stop,
    }
}

/// What `decode` carries from one poll to the next.
struct DecodeState<S> {
    sse: S,
    decoder: StreamDecoder,
    ready: VecDeque<Result<ChatEvent, LlmError>>,
    done: bool,
}

/// The `ChatEvent`s of an SSE stream. The first error is the stream's last item; a stream
/// that ends before `message_stop` ends with `Truncated`.
fn decode<S>(decoder: StreamDecoder, sse: S) -> impl Stream<Item = Result<ChatEvent, LlmError>> + Send + 'static
where
    S: Stream<Item = Result<eventsource_stream::Event, LlmError>> + Send + 'static,
{
    let state = DecodeState { sse: Box::pin(sse), decoder, ready: VecDeque::new(), done: false };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            if state.done {
                return None;
            }
            match state.sse.next().await {
                Some(Ok(event)) => {
                    let mut events = VecDeque::new();
                    match state.decoder.on_event(&event.data, &mut events) {
                        Ok(()) => {
                            state.ready.extend(events.into_iter().map(Ok));
                            state.done = state.decoder.finished;
                        }
                        Err(e) => {
                            state.ready.push_back(Err(e));
                            state.done = true;
                        }
                    }
                }
                Some(Err(e)) => {
                    state.ready.push_back(Err(e));
                    state.done = true;
                }
                None => {
                    state.ready.push_back(Err(LlmError::Truncated { provider: state.decoder.provider.clone() }));
                    state.done = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ToolCall, ToolDefinition};
    use serde_json::json;

    fn config() -> AnthropicConfig {
        AnthropicConfig {
            base_url: "http://localhost".into(),
            api_key: SecretString::from("k"),
            model: "claude-test".into(),
            deadline: Duration::from_secs(1),
            max_tokens_default: 256,
        }
    }

    fn body(request: &ChatRequest) -> Value {
        serde_json::to_value(MessagesRequest::new(&config(), request)).unwrap()
    }

    #[test]
    fn tool_choice_none_offers_no_tools_at_all() {
        let request = ChatRequest {
            messages: vec![ChatMessage::user("hi")],
            tools: vec![ToolDefinition { name: "t".into(), description: "d".into(), parameters: json!({}) }],
            tool_choice: ToolChoice::None,
            ..Default::default()
        };
        let body = body(&request);
        assert!(body.get("tools").is_none());
        assert!(body.get("tool_choice").is_none());
    }

    #[test]
    fn required_and_named_tool_choices_map_to_any_and_tool() {
        let tools = vec![ToolDefinition { name: "t".into(), description: "d".into(), parameters: json!({}) }];
        let request = ChatRequest { tools: tools.clone(), tool_choice: ToolChoice::Required, ..Default::default() };
        assert_eq!(body(&request)["tool_choice"], json!({"type": "any"}));
        let request = ChatRequest { tools, tool_choice: ToolChoice::Tool("t".into()), ..Default::default() };
        assert_eq!(body(&request)["tool_choice"], json!({"type": "tool", "name": "t"}));
    }

    #[test]
    fn json_mode_asks_for_json_in_the_system_prompt() {
        let request =
            ChatRequest { messages: vec![ChatMessage::system("Be brief.")], json_mode: true, ..Default::default() };
        let system = body(&request)["system"].as_str().unwrap().to_owned();
        assert!(system.starts_with("Be brief.\n\n"));
        assert!(system.contains("single JSON object"));
    }

    #[test]
    fn an_assistant_turn_that_only_called_tools_has_no_empty_text_block() {
        let mut turn = ChatMessage::assistant("");
        turn.tool_calls.push(ToolCall { id: "c1".into(), name: "t".into(), arguments: json!({"a": 1}) });
        let request = ChatRequest { messages: vec![ChatMessage::user("go"), turn], ..Default::default() };
        assert_eq!(
            body(&request)["messages"][1]["content"],
            json!([{"type": "tool_use", "id": "c1", "name": "t", "input": {"a": 1}}])
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        assert_eq!(finish_reason("end_turn"), FinishReason::Stop);
        assert_eq!(finish_reason("stop_sequence"), FinishReason::Stop);
        assert_eq!(finish_reason("max_tokens"), FinishReason::Length);
        assert_eq!(finish_reason("tool_use"), FinishReason::ToolCalls);
    }

    #[test]
    fn unknown_event_types_are_ignored() {
        let mut decoder = StreamDecoder::new("p".into(), ChatRequest::default());
        let mut out = VecDeque::new();
        decoder.on_event(r#"{"type":"something_new","x":1}"#, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
