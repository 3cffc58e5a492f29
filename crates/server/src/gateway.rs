//! The model gateway: a `model` at `/v1/chat/completions` that names one of `llm.gateway`'s
//! providers goes to that provider as it is, without the agent, through the same
//! `ChatModel` layer the agent uses: its retries with backoff, its circuit breaker, its
//! deadline, its stream checks (a malformed or cut stream is an error, never a short
//! answer). Any provider kind can be offered (OpenAI-compatible, Anthropic, the embedded
//! model); the client always speaks OpenAI's format.
//!
//! What is forwarded: the messages (system, user, assistant with its tool calls, tool
//! results), `tools` and `tool_choice`, `response_format: json_object`, `temperature`,
//! `max_tokens` (or `max_completion_tokens`), `stop`, `seed`. What cannot be honoured is
//! refused with 422 (`n` > 1, `logprobs`, a `json_schema` format, legacy `functions`);
//! other sampling fields (`top_p`, penalties) are accepted and not forwarded. A streamed
//! tool call arrives whole in one delta, once its arguments are complete and valid JSON.
//!
//! The answer's text, as a whole or as deltas, has the personal data `privacy.replies`
//! names replaced by placeholders; a delta may be held back until the number it might be
//! the start of has ended (`concierge_guard::StreamRedactor`).
//!
//! Every answer's usage (as the provider reported it, else counted here) is priced by
//! `[llm.prices]` and added to the usage ledger off the response's path.
//!
//! Invariant: a provider's failure is the client's status (400 refused, 429 with
//! Retry-After, 502, 503 breaker open, 504), never a 500; after the first byte of a stream
//! a failure is an `error` chunk and the stream ends without `[DONE]`.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use concierge_core::{TenantId, UsageRecord};
use concierge_guard::{KindSet, StreamRedactor};
use concierge_llm::resilience::ResilientModel;
use concierge_llm::{
    ChatEvent, ChatMessage, ChatModel, ChatRequest, ChatResponse, EventStream, FinishReason, LlmError, MessageRole,
    PriceTable, ToolCall, ToolChoice, ToolDefinition, Usage,
};
use concierge_store::Store;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::openai::{self, Content, Stop};

/// Longest tool name OpenAI accepts.
const MAX_TOOL_NAME: usize = 64;
/// Stop sequences a request may give.
const MAX_STOPS: usize = 4;

/// The providers offered as models, and where their usage goes.
pub struct Gateway {
    models: BTreeMap<String, Arc<ResilientModel>>,
    prices: PriceTable,
    store: Arc<dyn Store>,
    tenant: TenantId,
    /// Personal data replaced in what the models answer (`privacy.replies`).
    redact: KindSet,
}

impl Gateway {
    pub fn new(
        models: BTreeMap<String, Arc<ResilientModel>>,
        prices: PriceTable,
        store: Arc<dyn Store>,
        tenant: TenantId,
        redact: KindSet,
    ) -> Self {
        Self { models, prices, store, tenant, redact }
    }

    /// The models by name, in name order.
    pub fn models(&self) -> impl Iterator<Item = (&str, &Arc<ResilientModel>)> {
        self.models.iter().map(|(name, model)| (name.as_str(), model))
    }

    /// The model called `name`, when the gateway offers it.
    pub fn model(&self, name: &str) -> Option<&Arc<ResilientModel>> {
        self.models.get(name)
    }

    /// Answers `request` with `model`: a `chat.completion`, or its chunks when streaming.
    pub async fn complete(
        &self,
        model: Arc<ResilientModel>,
        request: openai::ChatRequest,
    ) -> Result<Response, ApiError> {
        let asked = translate(&request)?;
        let include_usage = request.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let chunks = Chunks {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            model: request.model,
            created: concierge_core::now().timestamp(),
        };
        let events = model.stream(&asked).await.map_err(upstream_error)?;
        let ledger = Ledger {
            store: Arc::clone(&self.store),
            tenant: self.tenant.clone(),
            prices: self.prices.clone(),
            model: model.id().to_owned(),
        };
        if !request.stream {
            let mut response = concierge_llm::collect(events).await.map_err(upstream_error)?;
            let usage = ledger.settle(&asked, response.usage, &response.text);
            if let Cow::Owned(text) = concierge_guard::scanner().redact(&response.text, self.redact) {
                response.text = text;
            }
            return Ok(Json(chunks.completion(&response, usage)).into_response());
        }
        let stream = Streamed {
            events: Some(events),
            chunks,
            include_usage,
            asked,
            ledger,
            answer: ChatResponse::default(),
            started: false,
            redactor: StreamRedactor::new(self.redact),
        };
        let stream = futures::stream::unfold((stream, VecDeque::new()), |(mut stream, mut pending)| async move {
            loop {
                if let Some(data) = pending.pop_front() {
                    return Some((Ok::<_, Infallible>(Event::default().data(data)), (stream, pending)));
                }
                pending.extend(stream.next_lines().await?);
            }
        });
        Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
    }
}

/// The OpenAI request as a `ChatRequest`, or why it cannot be one.
fn translate(request: &openai::ChatRequest) -> Result<ChatRequest, ApiError> {
    let unsupported = |what: &str| Err(ApiError::UnsupportedParameter(what.to_owned()));
    if request.n.is_some_and(|n| n != 1) {
        return unsupported("n must be 1");
    }
    if request.logprobs == Some(true) {
        return unsupported("logprobs are not returned by this gateway");
    }
    if request.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return unsupported("`functions` is not supported; declare them as `tools`");
    }
    let json_mode = match request.response_format.as_ref().map(|f| f["type"].as_str()) {
        None | Some(Some("text")) => false,
        Some(Some("json_object")) => true,
        Some(_) => return unsupported("response_format must be text or json_object"),
    };
    let tools = request.tools.iter().flatten().map(tool).collect::<Result<Vec<_>, _>>()?;
    let tool_choice = match &request.tool_choice {
        None => ToolChoice::Auto,
        Some(choice) => tool_choice(choice, &tools)?,
    };
    if request.messages.is_empty() {
        return Err(ApiError::InvalidBody("messages must not be empty".into()));
    }
    let messages = request.messages.iter().map(message).collect::<Result<Vec<_>, _>>()?;
    if let Some(t) = request.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        return Err(ApiError::InvalidBody(format!("temperature is {t}; expected 0 to 2")));
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    if max_tokens == Some(0) {
        return Err(ApiError::InvalidBody("max_tokens must be at least 1".into()));
    }
    let stop = match &request.stop {
        None => Vec::new(),
        Some(Stop::One(one)) => vec![one.clone()],
        Some(Stop::Many(many)) => many.clone(),
    };
    if stop.len() > MAX_STOPS || stop.iter().any(String::is_empty) {
        return Err(ApiError::InvalidBody(format!("stop takes 1 to {MAX_STOPS} non-empty sequences")));
    }
    Ok(ChatRequest {
        messages,
        tools,
        tool_choice,
        json_mode,
        temperature: request.temperature,
        max_tokens,
        stop,
        seed: request.seed,
    })
}

fn tool(value: &Value) -> Result<ToolDefinition, ApiError> {
    let function = &value["function"];
    let name = function["name"].as_str().unwrap_or_default();
    let valid = value["type"] == "function"
        && (1..=MAX_TOOL_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(ApiError::InvalidBody(format!(
            "each tool is {{\"type\": \"function\", \"function\": {{\"name\": …}}}} with a name of 1 to {MAX_TOOL_NAME} letters, digits, _ or -"
        )));
    }
    let parameters = match &function["parameters"] {
        Value::Null => json!({ "type": "object", "properties": {} }),
        schema @ Value::Object(_) => schema.clone(),
        _ => return Err(ApiError::InvalidBody(format!("tool `{name}`: parameters must be a JSON Schema object"))),
    };
    let description = function["description"].as_str().unwrap_or_default().to_owned();
    Ok(ToolDefinition { name: name.to_owned(), description, parameters })
}

fn tool_choice(choice: &Value, tools: &[ToolDefinition]) -> Result<ToolChoice, ApiError> {
    let named = |name: &str| {
        if tools.iter().any(|t| t.name == name) {
            Ok(ToolChoice::Tool(name.to_owned()))
        } else {
            Err(ApiError::InvalidBody(format!(
                "tool_choice names `{}`, which is not among the tools",
                name.chars().take(MAX_TOOL_NAME).collect::<String>()
            )))
        }
    };
    match choice {
        Value::String(mode) if mode == "auto" => Ok(ToolChoice::Auto),
        Value::String(mode) if mode == "none" => Ok(ToolChoice::None),
        Value::String(mode) if mode == "required" && !tools.is_empty() => Ok(ToolChoice::Required),
        Value::Object(_) if choice["type"] == "function" => named(choice["function"]["name"].as_str().unwrap_or("")),
        _ => Err(ApiError::InvalidBody(
            "tool_choice is auto, none, required (with tools) or {\"type\": \"function\", \"function\": {\"name\": …}}"
                .into(),
        )),
    }
}

fn message(message: &openai::ChatMessage) -> Result<ChatMessage, ApiError> {
    let content = message.content.as_ref().map(Content::text).transpose()?.unwrap_or_default();
    let role = match message.role.as_str() {
        "system" | "developer" => MessageRole::System,
        "user" => MessageRole::User,
        "assistant" => MessageRole::Assistant,
        "tool" => MessageRole::Tool,
        other => {
            return Err(ApiError::InvalidBody(format!(
                "message role `{}` is not supported; expected system, developer, user, assistant or tool",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    let tool_calls = match (&message.tool_calls, role) {
        (None, _) => Vec::new(),
        (Some(calls), MessageRole::Assistant) => calls.iter().map(past_call).collect::<Result<_, _>>()?,
        (Some(_), _) => return Err(ApiError::InvalidBody("only assistant messages carry tool_calls".into())),
    };
    let tool_call_id = match (role, &message.tool_call_id) {
        (MessageRole::Tool, Some(id)) if !id.is_empty() => Some(id.clone()),
        (MessageRole::Tool, _) => return Err(ApiError::InvalidBody("a tool message needs its tool_call_id".into())),
        _ => None,
    };
    Ok(ChatMessage { role, content, tool_calls, tool_call_id })
}

/// A call an assistant made earlier in the conversation, as the request repeats it.
fn past_call(call: &Value) -> Result<ToolCall, ApiError> {
    let function = &call["function"];
    let (Some(id), Some(name), Some(arguments)) =
        (call["id"].as_str(), function["name"].as_str(), function["arguments"].as_str())
    else {
        return Err(ApiError::InvalidBody(
            "each tool call is {\"id\": …, \"type\": \"function\", \"function\": {\"name\": …, \"arguments\": \"…\"}}"
                .into(),
        ));
    };
    let arguments = serde_json::from_str(arguments).map_err(|e| {
        ApiError::InvalidBody(format!(
            "the arguments of tool call `{}` are not JSON: {e}",
            id.chars().take(64).collect::<String>()
        ))
    })?;
    Ok(ToolCall { id: id.to_owned(), name: name.to_owned(), arguments })
}

/// What the client is told when the provider fails before answering.
fn upstream_error(error: LlmError) -> ApiError {
    match &error {
        LlmError::RateLimited { retry_after, .. } => ApiError::UpstreamRateLimited {
            retry_after_secs: retry_after.map_or(1, |after| after.as_secs_f64().ceil().max(1.0) as u64),
        },
        LlmError::CircuitOpen { .. } => ApiError::UpstreamUnavailable(error.to_string()),
        LlmError::Timeout { .. } => ApiError::UpstreamTimeout(error.to_string()),
        LlmError::ContextOverflow { .. } => ApiError::ContextTooLong(error.to_string()),
        // A request the provider found wrong is the client's to fix; its credentials or
        // its route are ours.
        LlmError::Rejected { status, .. } if ![401, 403, 404].contains(status) => {
            ApiError::UpstreamRejected(error.to_string())
        }
        _ => ApiError::UpstreamFailed(error.to_string()),
    }
}

/// The fields every completion object of one answer shares.
struct Chunks {
    id: String,
    model: String,
    created: i64,
}

impl Chunks {
    fn chunk(&self, choices: Value) -> String {
        self.chunk_value(choices).to_string()
    }

    fn chunk_value(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn delta(&self, delta: Value, finish: Option<FinishReason>) -> String {
        self.chunk(json!([{ "index": 0, "delta": delta, "finish_reason": finish }]))
    }

    fn completion(&self, response: &ChatResponse, usage: Usage) -> Value {
        let calls: Vec<Value> = response.tool_calls.iter().map(|call| call_json(call, None)).collect();
        let content = if response.text.is_empty() && !calls.is_empty() { Value::Null } else { json!(response.text) };
        let mut message = json!({ "role": "assistant", "content": content, "refusal": null });
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": response.finish,
                "logprobs": null,
            }],
            "usage": usage_json(usage),
        })
    }
}

fn call_json(call: &ToolCall, index: Option<usize>) -> Value {
    let mut value = json!({
        "id": call.id,
        "type": "function",
        "function": { "name": call.name, "arguments": call.arguments.to_string() },
    });
    if let Some(index) = index {
        value["index"] = json!(index);
    }
    value
}

/// OpenAI's `usage` object.
pub(crate) fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// Where an answer's usage is written.
#[derive(Clone)]
struct Ledger {
    store: Arc<dyn Store>,
    tenant: TenantId,
    prices: PriceTable,
    model: String,
}

impl Ledger {
    /// The answer's usage (counted here when the provider did not say), written to the
    /// ledger in the background so that the client does not wait for the store.
    fn settle(self, request: &ChatRequest, reported: Option<Usage>, text: &str) -> Usage {
        let usage = reported.unwrap_or_else(|| crate::answer::estimate_usage(&self.model, request, text));
        let cost_micros = self.prices.cost_micros(&self.model, usage);
        crate::telemetry::usage(
            &self.model,
            self.tenant.as_str(),
            usage.prompt_tokens,
            usage.completion_tokens,
            cost_micros,
        );
        let record = UsageRecord {
            tenant_id: self.tenant,
            conversation_id: None,
            cost_micros,
            model: self.model,
            prompt_tokens: i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX),
            completion_tokens: i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX),
            created_at: concierge_core::now(),
        };
        let store = self.store;
        tokio::spawn(async move {
            if let Err(error) = store.record_usage(&record).await {
                tracing::warn!(%error, model = %record.model, "could not add a gateway call to the usage ledger");
            }
        });
        usage
    }
}

/// A streamed answer being turned into chunks.
struct Streamed {
    /// `None` once the answer has ended.
    events: Option<EventStream>,
    chunks: Chunks,
    include_usage: bool,
    asked: ChatRequest,
    ledger: Ledger,
    answer: ChatResponse,
    /// The role chunk has been sent.
    started: bool,
    /// The text as sent: personal data replaced even when it comes split across deltas.
    redactor: StreamRedactor,
}

impl Streamed {
    /// The data lines of the next event, or `None` when the stream is over.
    async fn next_lines(&mut self) -> Option<Vec<String>> {
        let events = self.events.as_mut()?;
        let event = events.next().await;
        let mut lines = Vec::new();
        if !self.started {
            self.started = true;
            lines.push(self.chunks.delta(json!({ "role": "assistant", "content": "" }), None));
        }
        match event {
            Some(Ok(event)) => {
                self.answer.apply(&event);
                match event {
                    ChatEvent::TextDelta { text } => {
                        let sendable = self.redactor.push(&text);
                        self.text(&mut lines, sendable);
                    }
                    ChatEvent::ToolCall { call } => {
                        let index = self.answer.tool_calls.len() - 1;
                        lines.push(self.chunks.delta(json!({ "tool_calls": [call_json(&call, Some(index))] }), None));
                    }
                    ChatEvent::Usage { .. } => {}
                    ChatEvent::Finish { reason } => {
                        let rest = self.redactor.finish();
                        self.text(&mut lines, rest);
                        lines.push(self.chunks.delta(json!({}), Some(reason)));
                        self.end(&mut lines);
                    }
                }
            }
            Some(Err(error)) => self.fail(&mut lines, error),
            // `collect`'s rule: an answer without its finish is not an answer.
            None => {
                let cut = LlmError::Truncated { provider: self.ledger.model.clone() };
                self.fail(&mut lines, cut);
            }
        }
        Some(lines)
    }

    /// A chunk of text, unless there is none to send yet.
    fn text(&self, lines: &mut Vec<String>, text: String) {
        if !text.is_empty() {
            lines.push(self.chunks.delta(json!({ "content": text }), None));
        }
    }

    /// The stream's last chunks after `error`: the text still held back, then the error's
    /// code and message as a status before the stream would have given them (the
    /// provider's detail goes to the log only).
    fn fail(&mut self, lines: &mut Vec<String>, error: LlmError) {
        tracing::warn!(%error, "a gateway model's stream failed");
        self.events = None;
        let rest = self.redactor.finish();
        self.text(lines, rest);
        let refused = upstream_error(error);
        let (_, code) = refused.status_and_code();
        lines.push(
            json!({ "error": { "message": refused.to_string(), "type": "upstream_error", "code": code } }).to_string(),
        );
    }

    /// After the finish: the usage chunk when asked for, and `[DONE]`.
    fn end(&mut self, lines: &mut Vec<String>) {
        self.events = None;
        let usage = self.ledger.clone().settle(&self.asked, self.answer.usage, &self.answer.text);
        if self.include_usage {
            let mut chunk = self.chunks.chunk_value(json!([]));
            chunk["usage"] = usage_json(usage);
            lines.push(chunk.to_string());
        }
        lines.push("[DONE]".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> openai::ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    fn code(body: Value) -> Option<&'static str> {
        translate(&request(body)).err().map(|e| e.status_and_code().1)
    }

    #[test]
    fn an_openai_request_becomes_the_same_chat_request() {
        let asked = translate(&request(json!({
            "model": "upstream",
            "messages": [
                { "role": "developer", "content": "Be brief." },
                { "role": "user", "content": "Where is A-1?" },
                { "role": "assistant", "content": null, "tool_calls": [
                    { "id": "c1", "type": "function", "function": { "name": "order", "arguments": "{\"id\":\"A-1\"}" } }
                ] },
                { "role": "tool", "tool_call_id": "c1", "content": "{\"status\":\"shipped\"}" },
            ],
            "tools": [{ "type": "function", "function": { "name": "order", "description": "Looks up an order",
                "parameters": { "type": "object", "properties": { "id": { "type": "string" } } } } }],
            "tool_choice": { "type": "function", "function": { "name": "order" } },
            "response_format": { "type": "json_object" },
            "temperature": 0.3, "max_completion_tokens": 40, "stop": "END", "seed": 7, "top_p": 0.9,
        })))
        .unwrap();
        assert_eq!(asked.messages.len(), 4);
        assert_eq!(asked.messages[0].role, MessageRole::System);
        assert_eq!(asked.messages[2].tool_calls[0].arguments, json!({ "id": "A-1" }));
        assert_eq!(asked.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(asked.tools[0].name, "order");
        assert_eq!(asked.tool_choice, ToolChoice::Tool("order".into()));
        assert!(asked.json_mode);
        assert_eq!((asked.temperature, asked.max_tokens, asked.seed), (Some(0.3), Some(40), Some(7)));
        assert_eq!(asked.stop, vec!["END".to_owned()]);
    }

    #[test]
    fn what_cannot_be_forwarded_is_refused_with_its_code() {
        let user = json!([{ "role": "user", "content": "hi" }]);
        let with = |extra: Value| {
            let mut body = json!({ "model": "m", "messages": user });
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            code(body)
        };
        assert_eq!(with(json!({ "n": 3 })), Some("unsupported_parameter"));
        assert_eq!(with(json!({ "logprobs": true })), Some("unsupported_parameter"));
        assert_eq!(with(json!({ "functions": [{ "name": "f" }] })), Some("unsupported_parameter"));
        assert_eq!(with(json!({ "response_format": { "type": "json_schema" } })), Some("unsupported_parameter"));
        assert_eq!(
            with(json!({ "tools": [{ "type": "function", "function": { "name": "a b" } }] })),
            Some("invalid_body")
        );
        assert_eq!(with(json!({ "tools": [{ "type": "retrieval" }] })), Some("invalid_body"));
        assert_eq!(with(json!({ "tool_choice": "required" })), Some("invalid_body"), "required without tools");
        assert_eq!(
            with(json!({ "tools": [{ "type": "function", "function": { "name": "a" } }],
                "tool_choice": { "type": "function", "function": { "name": "b" } } })),
            Some("invalid_body")
        );
        assert_eq!(with(json!({ "temperature": 3.0 })), Some("invalid_body"));
        assert_eq!(with(json!({ "max_tokens": 0 })), Some("invalid_body"));
        assert_eq!(with(json!({ "stop": ["a", "b", "c", "d", "e"] })), Some("invalid_body"));
        assert_eq!(with(json!({ "stop": [""] })), Some("invalid_body"));
        assert_eq!(code(json!({ "model": "m", "messages": [] })), Some("invalid_body"));
        assert_eq!(
            code(json!({ "model": "m", "messages": [{ "role": "tool", "content": "x" }] })),
            Some("invalid_body")
        );
        assert_eq!(
            code(json!({ "model": "m", "messages": [{ "role": "critic", "content": "x" }] })),
            Some("invalid_body")
        );
        assert_eq!(
            code(json!({ "model": "m", "messages": [{ "role": "user", "content": "x",
                "tool_calls": [{ "id": "1", "function": { "name": "f", "arguments": "{}" } }] }] })),
            Some("invalid_body")
        );
        assert_eq!(
            code(json!({ "model": "m", "messages": [{ "role": "assistant",
                "tool_calls": [{ "id": "1", "function": { "name": "f", "arguments": "{not json" } }] }] })),
            Some("invalid_body")
        );
        assert_eq!(with(json!({ "top_p": 0.5, "presence_penalty": 1.0 })), None, "accepted, not forwarded");
    }

    #[test]
    fn each_failure_of_the_provider_is_a_status_of_its_own() {
        let status = |error: LlmError| upstream_error(error).status_and_code();
        let p = || "openai/x".to_owned();
        assert_eq!(
            status(LlmError::RateLimited { provider: p(), retry_after: Some(std::time::Duration::from_millis(2500)) })
                .1,
            "upstream_rate_limited"
        );
        match upstream_error(LlmError::RateLimited {
            provider: p(),
            retry_after: Some(std::time::Duration::from_millis(2500)),
        }) {
            ApiError::UpstreamRateLimited { retry_after_secs } => assert_eq!(retry_after_secs, 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(status(LlmError::CircuitOpen { provider: p() }).0.as_u16(), 503);
        assert_eq!(
            status(LlmError::Timeout { provider: p(), after: std::time::Duration::from_secs(1) }).0.as_u16(),
            504
        );
        assert_eq!(status(LlmError::Rejected { provider: p(), status: 400, message: "bad".into() }).0.as_u16(), 400);
        assert_eq!(status(LlmError::Rejected { provider: p(), status: 401, message: "key".into() }).0.as_u16(), 502);
        assert_eq!(status(LlmError::Server { provider: p(), status: 500, message: "x".into() }).0.as_u16(), 502);
        assert_eq!(status(LlmError::Truncated { provider: p() }).0.as_u16(), 502);
        assert_eq!(
            status(LlmError::ContextOverflow { provider: p(), needed: 9, limit: 8 }).1,
            "context_length_exceeded"
        );
    }
}
