//! OpenAI-compatible chat completions: OpenAI itself, and the servers that speak its API
//! (vLLM, llama.cpp's server, Ollama, TGI). Streaming over SSE, tool calls assembled from
//! their deltas (arguments split across chunks, several calls in parallel), JSON mode.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http;
use crate::model::{ChatModel, EventStream, LlmError};
use crate::types::{ChatEvent, ChatMessage, ChatRequest, FinishReason, MessageRole, ToolChoice, Usage};

/// Where and what to call.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API root, up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Bearer token; local servers often need none.
    pub api_key: Option<SecretString>,
    /// The pinned model id, e.g. `gpt-4o-mini-2024-07-18`.
    pub model: String,
    /// Deadline of one whole call, stream included.
    pub deadline: Duration,
}

/// A provider speaking the OpenAI chat completions API.
pub struct OpenAiCompatible {
    config: OpenAiConfig,
    id: String,
    client: reqwest::Client,
}

impl OpenAiCompatible {
    pub fn new(config: OpenAiConfig) -> Self {
        let id = format!("openai/{}", config.model);
        Self { config, id, client: reqwest::Client::new() }
    }

    /// The request body for `request`, in the API's shape.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": request.messages.iter().map(|m| message_json(m, Arguments::Text)).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({ "type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters } })
                })
                .collect();
            body["tool_choice"] = match &request.tool_choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({ "type": "function", "function": { "name": name } }),
            };
        }
        if request.json_mode {
            body["response_format"] = json!({ "type": "json_object" });
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = request.max_tokens {
            body["max_tokens"] = json!(m);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        if let Some(seed) = request.seed {
            body["seed"] = json!(seed);
        }
        body
    }
}

/// How a tool call's arguments are written in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arguments {
    /// As a JSON string, as the chat completions API takes them.
    Text,
    /// As a JSON object, as chat templates expect them.
    Object,
}

/// A message in the OpenAI chat shape: the wire format of chat completions, and the shape
/// GGUF chat templates are written for.
pub(crate) fn message_json(message: &ChatMessage, arguments: Arguments) -> Value {
    let role = match message.role {
        MessageRole::System => "system",
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
        MessageRole::Tool => "tool",
    };
    let mut out = json!({ "role": role, "content": message.content });
    if !message.tool_calls.is_empty() {
        out["tool_calls"] = message
            .tool_calls
            .iter()
            .map(|c| {
                let args = match arguments {
                    Arguments::Text => json!(c.arguments.to_string()),
                    Arguments::Object => c.arguments.clone(),
                };
                json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": args } })
            })
            .collect();
    }
    if let Some(id) = &message.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    out
}

#[async_trait::async_trait]
impl ChatModel for OpenAiCompatible {
    fn id(&self) -> &str {
        &self.id
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let mut builder = self.client.post(url).json(&self.body(request));
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key.expose_secret());
        }
        let response = http::send(&self.id, builder, self.config.deadline).await?;
        let events = http::sse_events(&self.id, self.config.deadline, response);
        Ok(Box::pin(assemble(self.id.clone(), request.clone(), events)))
    }
}

/// One streamed chunk, as much of it as is read.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChunkUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// A tool call being put together from its deltas.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Assembly state of one answer.
struct Assembly<S> {
    provider: String,
    request: ChatRequest,
    events: S,
    calls: BTreeMap<usize, PartialCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    ready: VecDeque<Result<ChatEvent, LlmError>>,
    done: bool,
}

/// Turns the SSE events of a completion into `ChatEvent`s. Tool calls are emitted, validated,
/// once the model says it has finished; `Finish` comes last, after `[DONE]` (or a clean end
/// of stream after a finish reason). Anything else is an error as the last item.
fn assemble<S>(
    provider: String,
    request: ChatRequest,
    events: S,
) -> impl Stream<Item = Result<ChatEvent, LlmError>> + Send
where
    S: Stream<Item = Result<eventsource_stream::Event, LlmError>> + Send + Unpin + 'static,
{
    let state = Assembly {
        provider,
        request,
        events,
        calls: BTreeMap::new(),
        finish: None,
        usage: None,
        ready: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                if item.is_err() {
                    state.done = true;
                    state.ready.clear();
                }
                return Some((item, state));
            }
            if state.done {
                return None;
            }
            match state.events.next().await {
                Some(Ok(event)) => state.on_event(&event.data),
                Some(Err(e)) => state.fail(e),
                None => state.on_end(),
            }
        }
    })
}

impl<S> Assembly<S> {
    fn fail(&mut self, error: LlmError) {
        self.ready.push_back(Err(error));
    }

    fn malformed(&mut self, message: String) {
        let provider = self.provider.clone();
        self.fail(LlmError::MalformedStream { provider, message });
    }

    fn on_event(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            return self.on_end();
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => return self.malformed(format!("chunk is not valid JSON ({e})")),
        };
        if let Some(u) = chunk.usage {
            self.usage = Some(Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens });
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.ready.push_back(Ok(ChatEvent::TextDelta { text }));
            }
            for delta in choice.delta.tool_calls {
                let call = self.calls.entry(delta.index).or_default();
                if let Some(id) = delta.id {
                    call.id = id;
                }
                if let Some(f) = delta.function {
                    if let Some(name) = f.name {
                        call.name.push_str(&name);
                    }
                    if let Some(args) = f.arguments {
                        call.arguments.push_str(&args);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(match reason.as_str() {
                    "length" => FinishReason::Length,
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    "content_filter" => FinishReason::ContentFilter,
                    _ => FinishReason::Stop,
                });
            }
        }
    }

    /// The end of the answer: `[DONE]` or the end of the body.
    fn on_end(&mut self) {
        self.done = true;
        let Some(reason) = self.finish else {
            let provider = self.provider.clone();
            return self.fail(LlmError::Truncated { provider });
        };
        for (index, call) in std::mem::take(&mut self.calls) {
            let id = if call.id.is_empty() { format!("call_{index}") } else { call.id };
            match http::validated_tool_call(&self.provider, &self.request, id, call.name, &call.arguments) {
                Ok(call) => self.ready.push_back(Ok(ChatEvent::ToolCall { call })),
                Err(e) => return self.fail(e),
            }
        }
        if let Some(usage) = self.usage {
            self.ready.push_back(Ok(ChatEvent::Usage { usage }));
        }
        self.ready.push_back(Ok(ChatEvent::Finish { reason }));
    }
}
