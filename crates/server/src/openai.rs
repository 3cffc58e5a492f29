//! The OpenAI-compatible API: `POST /v1/chat/completions` and `GET /v1/models`, so that a
//! client written for OpenAI (its SDKs, LangChain's `ChatOpenAI`, …) talks to the support
//! agent unchanged. The agent is the model: its name (`agent.name`) is the one model listed.
//!
//! A request is one customer turn: its last message, which must be the user's. Which
//! conversation it belongs to comes from the `X-Conversation-Id` header (or
//! `metadata.conversation_id`): that conversation goes on, and the earlier messages of the
//! request are not needed (the store has them). Without one, a conversation is opened, the
//! request's earlier user and assistant messages are stored in it as its history, and its
//! id is returned in the `X-Conversation-Id` header and the `conversation_id` field, so a
//! client that keeps it continues there. System messages are not used: the agent has its
//! own prompts. Sampling parameters (`temperature`, `top_p`, …) are accepted and left to
//! the agent's configuration; what cannot be honoured (`n` > 1, the client's own `tools`,
//! a structured `response_format`) is refused.
//!
//! `usage` reports the language-model tokens the turn spent (zero when it answered without
//! a model, e.g. from a tool's result).
//!
//! A `model` naming one of `llm.gateway`'s providers is not the agent: the request goes
//! to that model as it is (see `gateway`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use concierge_core::{ConversationId, Message, Role};
use concierge_llm::{ChatModel, Usage};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::conversation::{ConversationService, TurnEvent};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::gateway::Gateway;

const CONVERSATION_HEADER: HeaderName = HeaderName::from_static("x-conversation-id");
/// Earlier messages a request may bring into a new conversation.
const MAX_HISTORY: usize = 200;

/// The parts of a chat-completions request Concierge reads; the other fields are accepted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub functions: Option<Vec<Value>>,
    #[serde(default)]
    pub response_format: Option<Value>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// The client's reference for its end user; kept as the new conversation's customer.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    /// An assistant message's calls (gateway models only).
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
    /// A tool message's call (gateway models only).
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// `stop`: one sequence or several.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// A message's content: a string, or parts of which only text is understood.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    pub(crate) fn text(&self) -> Result<String, ApiError> {
        match self {
            Content::Text(text) => Ok(text.clone()),
            Content::Parts(parts) => parts
                .iter()
                .map(|part| match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(text)) => Ok(text),
                    (kind, _) => Err(ApiError::UnsupportedParameter(format!(
                        "content parts of type `{}` are not supported; send text",
                        kind.unwrap_or("?").chars().take(40).collect::<String>()
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|texts| texts.join("\n")),
        }
    }
}

/// What a request asks, checked.
struct Asked {
    model: String,
    conversation: Option<ConversationId>,
    history: Vec<(Role, String)>,
    question: String,
    stream: bool,
    include_usage: bool,
    user: Option<String>,
}

fn check(request: ChatRequest, headers: &HeaderMap, agent: &str) -> Result<Asked, ApiError> {
    if request.model != agent {
        return Err(ApiError::UnknownModel(request.model.chars().take(100).collect()));
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::UnsupportedParameter("n must be 1".into()));
    }
    if request.tools.as_ref().is_some_and(|t| !t.is_empty())
        || request.functions.as_ref().is_some_and(|f| !f.is_empty())
    {
        return Err(ApiError::UnsupportedParameter(
            "tools are the agent's own (declared in its configuration); a request cannot bring any".into(),
        ));
    }
    if let Some(format) = &request.response_format {
        if format["type"].as_str().is_some_and(|t| t != "text") {
            return Err(ApiError::UnsupportedParameter("response_format must be text".into()));
        }
    }
    let conversation = conversation_of(headers, request.metadata.as_ref())?;
    let mut messages = request.messages;
    let Some(last) = messages.pop() else {
        return Err(ApiError::InvalidBody("messages must not be empty".into()));
    };
    if last.role != "user" {
        return Err(ApiError::InvalidBody("the last message must be the user's".into()));
    }
    let question = last.content.as_ref().map(Content::text).transpose()?.unwrap_or_default();
    let mut history = Vec::new();
    if conversation.is_none() {
        for message in messages {
            let role = match message.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "system" | "developer" => continue,
                other => {
                    return Err(ApiError::InvalidBody(format!(
                        "message role `{}` is not supported here; expected user, assistant or system",
                        other.chars().take(40).collect::<String>()
                    )))
                }
            };
            let text = message.content.as_ref().map(Content::text).transpose()?.unwrap_or_default();
            if !text.trim().is_empty() {
                history.push((role, text));
            }
        }
        if history.len() > MAX_HISTORY {
            return Err(ApiError::InvalidBody(format!("at most {MAX_HISTORY} earlier messages are accepted")));
        }
    }
    Ok(Asked {
        model: request.model,
        conversation,
        history,
        question,
        stream: request.stream,
        include_usage: request.stream_options.is_some_and(|o| o.include_usage),
        user: request.user,
    })
}

fn conversation_of(headers: &HeaderMap, metadata: Option<&Value>) -> Result<Option<ConversationId>, ApiError> {
    let from_header = headers.get(&CONVERSATION_HEADER).map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    let from_metadata = metadata.and_then(|m| m["conversation_id"].as_str()).map(str::to_owned);
    from_header.or(from_metadata).map(|id| id.trim().parse::<ConversationId>().map_err(ApiError::from)).transpose()
}

#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, description = "the agent, then the gateway's models", body = serde_json::Value)))]
pub async fn list_models(
    State(service): State<Arc<ConversationService>>,
    State(gateway): State<Arc<Gateway>>,
) -> impl IntoResponse {
    let created = concierge_core::now().timestamp();
    let owner = service.tenant().as_str().to_owned();
    let mut models =
        vec![json!({ "id": service.agent_name(), "object": "model", "created": created, "owned_by": owner })];
    for (name, model) in gateway.models() {
        models.push(json!({ "id": name, "object": "model", "created": created, "owned_by": model.id() }));
    }
    Json(json!({ "object": "list", "data": models }))
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatRequest,
    params(("x-conversation-id" = Option<String>, Header, description = "the agent's conversation to continue")),
    responses((status = 200, description = "a chat.completion, or with `stream: true` chat.completion.chunk events ending in [DONE]; for the agent, `X-Conversation-Id` names the conversation", body = serde_json::Value,
        content_type = "application/json"),
        (status = 400, description = "a gateway model's provider refused the request, or it is too long for the model", body = crate::routes::ErrorBody),
        (status = 404, description = "unknown model", body = crate::routes::ErrorBody),
        (status = 422, description = "invalid body or unsupported parameter", body = crate::routes::ErrorBody),
        (status = 429, description = "a gateway model's provider is rate limiting; see Retry-After", body = crate::routes::ErrorBody),
        (status = 502, description = "a gateway model's provider failed", body = crate::routes::ErrorBody),
        (status = 503, description = "a gateway model's circuit breaker is open", body = crate::routes::ErrorBody),
        (status = 504, description = "a gateway model's provider did not answer in time", body = crate::routes::ErrorBody)))]
pub async fn chat_completions(
    State(service): State<Arc<ConversationService>>,
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    if request.model != service.agent_name() {
        if let Some(model) = gateway.model(&request.model) {
            return gateway.complete(Arc::clone(model), request).await;
        }
    }
    let asked = check(request, &headers, service.agent_name())?;
    // The question is checked before a conversation is opened for it.
    concierge_core::MessageText::parse(&asked.question, service.max_message_chars())?;
    let conversation = match asked.conversation {
        Some(id) => id,
        None => {
            let user = asked.user.clone().filter(|u| !u.is_empty() && u.chars().count() <= 128);
            let id = service.create(user, "openai").await?.id;
            service.import_history(id, &asked.history).await?;
            id
        }
    };
    let created = concierge_core::now().timestamp();
    let header_value =
        HeaderValue::from_str(&conversation.to_string()).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !asked.stream {
        let exchange = service.post_message(conversation, &asked.question).await?;
        let body = completion(&asked.model, created, conversation, &exchange.message, &exchange.reply);
        let mut response = Json(body).into_response();
        response.headers_mut().insert(CONVERSATION_HEADER, header_value);
        return Ok(response);
    }
    let events = service.post_message_streamed(conversation, &asked.question).await?;
    let chunks = Chunks { model: asked.model, created, conversation, include_usage: asked.include_usage, id: None };
    let stream = futures::stream::unfold(
        (events, chunks, Vec::new(), false),
        |(mut events, mut chunks, mut pending, mut ended)| async move {
            loop {
                if let Some(data) = pending.pop() {
                    return Some((Ok::<_, Infallible>(Event::default().data(data)), (events, chunks, pending, ended)));
                }
                if ended {
                    return None;
                }
                match events.recv().await {
                    Some(event) => {
                        let mut out = chunks.translate(&event);
                        out.reverse();
                        pending = out;
                    }
                    None => {
                        // The turn ended (or could not go on): the stream says it is over.
                        pending = vec!["[DONE]".to_owned()];
                        ended = true;
                    }
                }
            }
        },
    );
    let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    response.headers_mut().insert(CONVERSATION_HEADER, header_value);
    Ok(response)
}

/// The chunks of a streamed completion, made from the turn's events.
struct Chunks {
    model: String,
    created: i64,
    conversation: ConversationId,
    include_usage: bool,
    id: Option<String>,
}

impl Chunks {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        json!({
            "id": self.id.as_deref().unwrap_or("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "conversation_id": self.conversation,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
        .to_string()
    }

    /// The SSE data lines one turn event becomes (tool status and citations have no place
    /// in this format and become none).
    fn translate(&mut self, event: &TurnEvent) -> Vec<String> {
        match event.kind.as_str() {
            "meta" => {
                self.id = event.data["message_id"].as_str().map(|id| format!("chatcmpl-{id}"));
                vec![self.chunk(json!({ "role": "assistant", "content": "" }), None)]
            }
            "token" => vec![self.chunk(json!({ "content": event.data["text"] }), None)],
            "done" => {
                let mut out = vec![self.chunk(json!({}), Some("stop"))];
                if self.include_usage {
                    out.push(
                        json!({
                            "id": self.id.as_deref().unwrap_or("chatcmpl"),
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": usage_of(&event.data),
                        })
                        .to_string(),
                    );
                }
                out
            }
            "error" => vec![json!({ "error": {
                "message": event.data["message"],
                "type": "server_error",
                "code": event.data["code"],
            }})
            .to_string()],
            _ => Vec::new(),
        }
    }
}

fn completion(model: &str, created: i64, conversation: ConversationId, message: &Message, reply: &Message) -> Value {
    json!({
        "id": format!("chatcmpl-{}", message.id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "conversation_id": conversation,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": reply.content, "refusal": null },
            "finish_reason": "stop",
            "logprobs": null,
        }],
        "usage": usage_of(&reply.metadata),
    })
}

/// The model tokens a reply's turn spent: its answer's and its function calls'.
fn usage_of(metadata: &Value) -> Value {
    let sum = |key: &str| {
        metadata["usage"][key].as_u64().unwrap_or(0) + metadata["function_calling"]["usage"][key].as_u64().unwrap_or(0)
    };
    crate::gateway::usage_json(Usage {
        prompt_tokens: sum("prompt_tokens"),
        completion_tokens: sum("completion_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_request_is_its_last_user_message_and_the_history_before_it() {
        let asked = check(
            request(json!({
                "model": "acme-support",
                "messages": [
                    { "role": "system", "content": "You are helpful." },
                    { "role": "user", "content": "Hi" },
                    { "role": "assistant", "content": "Hello! How can I help?" },
                    { "role": "user", "content": [{ "type": "text", "text": "Where is" }, { "type": "text", "text": "my order?" }] },
                ],
                "temperature": 0.2,
                "stream": true,
                "stream_options": { "include_usage": true },
            })),
            &HeaderMap::new(),
            "acme-support",
        )
        .unwrap();
        assert_eq!(asked.question, "Where is\nmy order?");
        assert_eq!(asked.history, vec![(Role::User, "Hi".into()), (Role::Assistant, "Hello! How can I help?".into())]);
        assert!(asked.stream && asked.include_usage && asked.conversation.is_none());
    }

    #[test]
    fn a_known_conversation_needs_no_history() {
        let id = ConversationId::new();
        let mut headers = HeaderMap::new();
        headers.insert(CONVERSATION_HEADER, HeaderValue::from_str(&id.to_string()).unwrap());
        let body = json!({ "model": "m", "messages": [{ "role": "user", "content": "a" }, { "role": "user", "content": "b" }] });
        let asked = check(request(body.clone()), &headers, "m").unwrap();
        assert_eq!((asked.conversation, asked.history.len()), (Some(id), 0));

        let mut with_metadata = body;
        with_metadata["metadata"] = json!({ "conversation_id": id.to_string() });
        assert_eq!(check(request(with_metadata), &HeaderMap::new(), "m").unwrap().conversation, Some(id));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_its_code() {
        let code = |body: Value| check(request(body), &HeaderMap::new(), "m").err().map(|e| e.status_and_code().1);
        let user = json!([{ "role": "user", "content": "hi" }]);
        assert_eq!(code(json!({ "model": "gpt-4o", "messages": user })), Some("model_not_found"));
        assert_eq!(code(json!({ "model": "m", "messages": user, "n": 2 })), Some("unsupported_parameter"));
        assert_eq!(
            code(json!({ "model": "m", "messages": user, "tools": [{ "type": "function" }] })),
            Some("unsupported_parameter")
        );
        assert_eq!(
            code(json!({ "model": "m", "messages": user, "response_format": { "type": "json_object" } })),
            Some("unsupported_parameter")
        );
        assert_eq!(code(json!({ "model": "m", "messages": [] })), Some("invalid_body"));
        assert_eq!(
            code(json!({ "model": "m", "messages": [{ "role": "assistant", "content": "x" }] })),
            Some("invalid_body")
        );
        assert_eq!(
            code(
                json!({ "model": "m", "messages": [{ "role": "user", "content": [{ "type": "image_url", "image_url": {} }] }] })
            ),
            Some("unsupported_parameter")
        );
        assert_eq!(
            code(
                json!({ "model": "m", "messages": [{ "role": "tool", "content": "x" }, { "role": "user", "content": "y" }] })
            ),
            Some("invalid_body")
        );
        assert!(code(json!({ "model": "m", "messages": user, "tools": [] })).is_none(), "no tools is fine");
    }

    #[test]
    fn usage_adds_the_answer_and_the_function_calls() {
        let metadata = json!({
            "usage": { "prompt_tokens": 100, "completion_tokens": 20 },
            "function_calling": { "usage": { "prompt_tokens": 50, "completion_tokens": 5 } },
        });
        assert_eq!(usage_of(&metadata), json!({ "prompt_tokens": 150, "completion_tokens": 25, "total_tokens": 175 }));
        assert_eq!(usage_of(&json!({})), json!({ "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 }));
    }
}
