//! The OpenAI-compatible provider against a local stub server (a test double that serves
//! canned responses and records what it was sent).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use concierge_llm::openai::{OpenAiCompatible, OpenAiConfig};
use concierge_llm::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, LlmError, ToolCall, ToolChoice, ToolDefinition,
};
use serde_json::{json, Value};

/// What the stub answers and what it saw.
#[derive(Clone)]
struct Stub {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
    seen: Arc<Mutex<Option<(HeaderMap, Value)>>>,
}

impl Stub {
    fn sse(chunks: &[Value], done: bool) -> Self {
        let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        if done {
            body.push_str("data: [DONE]\n\n");
        }
        Self::raw(StatusCode::OK, body)
    }

    fn raw(status: StatusCode, body: impl Into<String>) -> Self {
        Self { status, headers: Vec::new(), body: body.into(), delay: Duration::ZERO, seen: Arc::default() }
    }

    /// Serves this stub on a random port; returns the API root.
    async fn serve(&self) -> String {
        let stub = self.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let stub = stub.clone();
                async move {
                    *stub.seen.lock().unwrap() = Some((headers, body));
                    tokio::time::sleep(stub.delay).await;
                    let mut response = (stub.status, stub.body.clone()).into_response();
                    response.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
                    for (name, value) in &stub.headers {
                        response.headers_mut().insert(*name, value.parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1")
    }
}

fn provider(base_url: String) -> OpenAiCompatible {
    OpenAiCompatible::new(OpenAiConfig {
        base_url,
        api_key: Some("sk-test-key".to_string().into()),
        model: "test-model-2024-01-01".into(),
        deadline: Duration::from_millis(1500),
    })
}

fn text_chunk(text: &str) -> Value {
    json!({ "choices": [{ "index": 0, "delta": { "content": text }, "finish_reason": null }] })
}

fn finish_chunk(reason: &str) -> Value {
    json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": reason }] })
}

fn tool_delta(index: usize, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
    let mut call = json!({ "index": index, "function": { "arguments": args } });
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [call] }, "finish_reason": null }] })
}

fn order_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_order".into(),
        description: "Look up an order".into(),
        parameters: json!({ "type": "object", "properties": { "order_id": { "type": "string" } } }),
    }
}

fn tool_request() -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::user("Where is A-10024?")],
        tools: vec![order_tool()],
        ..Default::default()
    }
}

#[tokio::test]
async fn streamed_text_is_assembled_with_usage_and_finish() {
    let usage = json!({ "choices": [], "usage": { "prompt_tokens": 12, "completion_tokens": 2 } });
    let stub = Stub::sse(&[text_chunk("Hel"), text_chunk("lo"), finish_chunk("stop"), usage], true);
    let model = provider(stub.serve().await);
    assert_eq!(model.id(), "openai/test-model-2024-01-01");
    let response =
        model.complete(&ChatRequest { messages: vec![ChatMessage::user("hi")], ..Default::default() }).await.unwrap();
    assert_eq!(response.text, "Hello");
    assert_eq!(response.finish, Some(FinishReason::Stop));
    assert_eq!(response.usage.unwrap().prompt_tokens, 12);
}

#[tokio::test]
async fn the_request_carries_tools_choice_json_mode_tool_results_and_the_key() {
    let stub = Stub::sse(&[text_chunk("{}"), finish_chunk("stop")], true);
    let model = provider(stub.serve().await);
    let call = ToolCall { id: "call_1".into(), name: "get_order".into(), arguments: json!({ "order_id": "A-1" }) };
    let mut assistant = ChatMessage::assistant("");
    assistant.tool_calls = vec![call];
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("Where is A-1?"),
            assistant,
            ChatMessage::tool_result("call_1", r#"{"status":"shipped"}"#),
        ],
        tools: vec![order_tool()],
        tool_choice: ToolChoice::Tool("get_order".into()),
        json_mode: true,
        temperature: Some(0.0),
        max_tokens: Some(64),
        stop: vec!["\n\n".into()],
        seed: Some(7),
    };
    model.complete(&request).await.unwrap();
    let (headers, body) = stub.seen.lock().unwrap().clone().unwrap();
    assert_eq!(headers["authorization"], "Bearer sk-test-key");
    assert_eq!(body["model"], "test-model-2024-01-01");
    assert_eq!(body["stream"], true);
    assert_eq!(body["tools"][0]["function"]["name"], "get_order");
    assert_eq!(body["tool_choice"], json!({ "type": "function", "function": { "name": "get_order" } }));
    assert_eq!(body["response_format"], json!({ "type": "json_object" }));
    assert_eq!(body["messages"][2]["tool_calls"][0]["function"]["arguments"], r#"{"order_id":"A-1"}"#);
    assert_eq!(
        body["messages"][3],
        json!({ "role": "tool", "tool_call_id": "call_1", "content": r#"{"status":"shipped"}"# })
    );
    assert_eq!(
        (body["max_tokens"].clone(), body["seed"].clone(), body["stop"].clone()),
        (json!(64), json!(7), json!(["\n\n"]))
    );
}

#[tokio::test]
async fn tool_call_arguments_split_across_chunks_and_parallel_calls_are_assembled() {
    let stub = Stub::sse(
        &[
            tool_delta(0, Some("call_a"), Some("get_order"), ""),
            tool_delta(1, Some("call_b"), Some("get_order"), "{\"order_"),
            tool_delta(0, None, None, "{\"order_id\":"),
            tool_delta(0, None, None, "\"A-10024\"}"),
            tool_delta(1, None, None, "id\":\"A-10025\"}"),
            finish_chunk("tool_calls"),
        ],
        true,
    );
    let response = provider(stub.serve().await).complete(&tool_request()).await.unwrap();
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
    let calls: Vec<(&str, &Value)> = response.tool_calls.iter().map(|c| (c.id.as_str(), &c.arguments)).collect();
    assert_eq!(calls, [("call_a", &json!({ "order_id": "A-10024" })), ("call_b", &json!({ "order_id": "A-10025" }))]);
}

#[tokio::test]
async fn a_stream_cut_mid_tool_call_is_truncated_not_a_shorter_answer() {
    let stub = Stub::sse(&[text_chunk("Let me check"), tool_delta(0, Some("c"), Some("get_order"), "{\"order")], false);
    let err = provider(stub.serve().await).complete(&tool_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::Truncated { .. }), "{err}");
}

#[tokio::test]
async fn invalid_tool_json_and_unknown_tools_are_errors() {
    let bad_json = Stub::sse(
        &[tool_delta(0, Some("c"), Some("get_order"), "{\"order_id\": A-1}"), finish_chunk("tool_calls")],
        true,
    );
    let err = provider(bad_json.serve().await).complete(&tool_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::InvalidToolArguments { .. }), "{err}");
    let unknown =
        Stub::sse(&[tool_delta(0, Some("c"), Some("delete_account"), "{}"), finish_chunk("tool_calls")], true);
    let err = provider(unknown.serve().await).complete(&tool_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::UnknownTool { ref name, .. } if name == "delete_account"), "{err}");
}

#[tokio::test]
async fn malformed_sse_data_is_an_error() {
    let stub = Stub::raw(StatusCode::OK, "data: {not json\n\n");
    let err = provider(stub.serve().await).complete(&tool_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::MalformedStream { .. }), "{err}");
}

#[tokio::test]
async fn http_failures_are_sorted_for_the_retry_policy() {
    let mut limited = Stub::raw(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"slow down"}"#);
    limited.headers.push(("retry-after", "2".into()));
    let err = provider(limited.serve().await).complete(&tool_request()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert!(err.is_retryable());

    let err = provider(Stub::raw(StatusCode::INTERNAL_SERVER_ERROR, "boom").serve().await)
        .complete(&tool_request())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Server { status: 500, .. }) && err.is_retryable(), "{err}");

    let err =
        provider(Stub::raw(StatusCode::BAD_REQUEST, "bad").serve().await).complete(&tool_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::Rejected { status: 400, .. }) && !err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_dead_or_slow_server_is_connect_or_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let err = provider(dead).complete(&tool_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::Connect { .. }), "{err}");

    let mut slow = Stub::sse(&[text_chunk("late"), finish_chunk("stop")], true);
    slow.delay = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let err = provider(slow.serve().await).complete(&tool_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
}
