//! The Anthropic provider against a local test double of the Messages API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use concierge_llm::anthropic::{AnthropicConfig, AnthropicProvider};
use concierge_llm::{
    collect, ChatEvent, ChatMessage, ChatModel, ChatRequest, FinishReason, LlmError, ToolCall, ToolChoice,
    ToolDefinition, Usage,
};
use futures::StreamExt;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_millis(500);

/// What the test double answers to every request.
#[derive(Clone)]
struct Canned {
    status: StatusCode,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    delay: Duration,
}

impl Canned {
    fn sse(body: String) -> Self {
        Self {
            status: StatusCode::OK,
            headers: vec![("content-type", "text/event-stream")],
            body,
            delay: Duration::ZERO,
        }
    }

    fn status(status: u16, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            headers: vec![("content-type", "application/json")],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }
}

/// The request the test double received.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
struct StubState {
    canned: Canned,
    received: Arc<Mutex<Option<Received>>>,
}

/// A test double of Anthropic's Messages API on a random local port: it serves one canned
/// response to every `POST /v1/messages` and keeps the last request it got.
struct StubAnthropic {
    base_url: String,
    received: Arc<Mutex<Option<Received>>>,
}

impl StubAnthropic {
    async fn start(canned: Canned) -> Self {
        let received = Arc::new(Mutex::new(None));
        let state = StubState { canned, received: received.clone() };
        let app = Router::new().route("/v1/messages", post(answer)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base_url, received }
    }

    fn provider(&self) -> AnthropicProvider {
        provider_at(&self.base_url)
    }

    fn received(&self) -> Received {
        self.received.lock().unwrap().clone().expect("the stub received a request")
    }
}

async fn answer(State(state): State<StubState>, headers: HeaderMap, body: Bytes) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *state.received.lock().unwrap() = Some(Received { headers, body });
    tokio::time::sleep(state.canned.delay).await;
    let mut response = Response::builder().status(state.canned.status);
    for (name, value) in &state.canned.headers {
        response = response.header(*name, *value);
    }
    response.body(Body::from(state.canned.body)).unwrap()
}

fn provider_at(base_url: &str) -> AnthropicProvider {
    AnthropicProvider::new(AnthropicConfig {
        base_url: base_url.to_owned(),
        api_key: "sk-ant-test".into(),
        model: "claude-3-5-haiku-20241022".into(),
        deadline: DEADLINE,
        max_tokens_default: 1024,
    })
}

/// An SSE body: each value becomes one event named after its `type`.
fn sse(events: &[Value]) -> String {
    events.iter().map(|e| format!("event: {}\ndata: {}\n\n", e["type"].as_str().unwrap(), e)).collect()
}

fn message_start(input_tokens: u64) -> Value {
    json!({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-3-5-haiku-20241022",
        "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1}
    }})
}

fn text_block_start(index: u64) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
}

fn text_delta(index: u64, text: &str) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})
}

fn tool_use_start(index: u64, id: &str, name: &str) -> Value {
    json!({"type": "content_block_start", "index": index,
           "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})
}

fn input_json_delta(index: u64, partial_json: &str) -> Value {
    json!({"type": "content_block_delta", "index": index,
           "delta": {"type": "input_json_delta", "partial_json": partial_json}})
}

fn block_stop(index: u64) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn message_delta(stop_reason: &str, output_tokens: u64) -> Value {
    json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
           "usage": {"output_tokens": output_tokens}})
}

fn message_stop() -> Value {
    json!({"type": "message_stop"})
}

fn ping() -> Value {
    json!({"type": "ping"})
}

fn get_order_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_order".into(),
        description: "Looks up an order by id".into(),
        parameters: json!({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}),
    }
}

fn get_customer_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_customer".into(),
        description: "Looks up a customer by email".into(),
        parameters: json!({"type": "object", "properties": {"email": {"type": "string"}}}),
    }
}

fn ask(question: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::user(question)],
        tools: vec![get_order_tool(), get_customer_tool()],
        ..Default::default()
    }
}

/// A tool call whose input arrives in pieces, as block `index`.
fn tool_use(index: u64, id: &str, name: &str, pieces: &[&str]) -> Vec<Value> {
    let mut events = vec![tool_use_start(index, id, name)];
    events.extend(pieces.iter().map(|p| input_json_delta(index, p)));
    events.push(block_stop(index));
    events
}

async fn stream_items(provider: &AnthropicProvider, request: &ChatRequest) -> Vec<Result<ChatEvent, LlmError>> {
    provider.stream(request).await.unwrap().collect().await
}

fn last_error(items: &[Result<ChatEvent, LlmError>]) -> LlmError {
    items.last().unwrap().clone().unwrap_err()
}

#[tokio::test]
async fn the_id_names_provider_and_pinned_model() {
    assert_eq!(provider_at("http://localhost").id(), "anthropic/claude-3-5-haiku-20241022");
}

#[tokio::test]
async fn streamed_text_is_assembled_with_usage_and_a_stop() {
    let stub = StubAnthropic::start(Canned::sse(sse(&[
        message_start(25),
        text_block_start(0),
        ping(),
        text_delta(0, "Your order "),
        text_delta(0, "has shipped."),
        block_stop(0),
        message_delta("end_turn", 7),
        message_stop(),
    ])))
    .await;

    let items = stream_items(&stub.provider(), &ask("Where is my order?")).await;
    let events: Vec<ChatEvent> = items.into_iter().map(Result::unwrap).collect();

    assert_eq!(
        events,
        vec![
            ChatEvent::TextDelta { text: "Your order ".into() },
            ChatEvent::TextDelta { text: "has shipped.".into() },
            ChatEvent::Usage { usage: Usage { prompt_tokens: 25, completion_tokens: 7 } },
            ChatEvent::Finish { reason: FinishReason::Stop },
        ]
    );
}

#[tokio::test]
async fn the_request_carries_headers_system_tools_and_tool_results_in_anthropic_shape() {
    let stub =
        StubAnthropic::start(Canned::sse(sse(&[message_start(1), message_delta("end_turn", 1), message_stop()]))).await;
    let mut assistant = ChatMessage::assistant("Let me look.");
    assistant.tool_calls = vec![
        ToolCall { id: "toolu_1".into(), name: "get_order".into(), arguments: json!({"order_id": "A-1"}) },
        ToolCall { id: "toolu_2".into(), name: "get_customer".into(), arguments: json!({"email": "a@b.c"}) },
    ];
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system("You are a support agent."),
            ChatMessage::system("Be brief."),
            ChatMessage::user("Where is order A-1?"),
            assistant,
            ChatMessage::tool_result("toolu_1", r#"{"status":"shipped"}"#),
            ChatMessage::tool_result("toolu_2", r#"{"name":"Ada"}"#),
        ],
        tools: vec![get_order_tool(), get_customer_tool()],
        tool_choice: ToolChoice::Auto,
        temperature: Some(0.5),
        stop: vec!["END".into()],
        ..Default::default()
    };

    stub.provider().complete(&request).await.unwrap();

    let received = stub.received();
    assert_eq!(received.headers["x-api-key"], "sk-ant-test");
    assert_eq!(received.headers["anthropic-version"], "2023-06-01");
    assert_eq!(received.headers["content-type"], "application/json");
    let body = received.body;
    assert_eq!(body["model"], "claude-3-5-haiku-20241022");
    assert_eq!(body["max_tokens"], 1024);
    assert_eq!(body["stream"], true);
    assert_eq!(body["system"], "You are a support agent.\n\nBe brief.");
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["tool_choice"], json!({"type": "auto"}));
    assert_eq!(
        body["tools"][0],
        json!({"name": "get_order", "description": "Looks up an order by id", "input_schema": get_order_tool().parameters})
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Where is order A-1?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_order", "input": {"order_id": "A-1"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_customer", "input": {"email": "a@b.c"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": r#"{"status":"shipped"}"#},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": r#"{"name":"Ada"}"#},
            ]},
        ])
    );
}

#[tokio::test]
async fn the_request_max_tokens_overrides_the_default() {
    let stub =
        StubAnthropic::start(Canned::sse(sse(&[message_start(1), message_delta("max_tokens", 5), message_stop()])))
            .await;
    let request = ChatRequest { max_tokens: Some(5), ..ask("Tell me everything.") };

    let response = stub.provider().complete(&request).await.unwrap();

    assert_eq!(stub.received().body["max_tokens"], 5);
    assert_eq!(response.finish, Some(FinishReason::Length));
}

#[tokio::test]
async fn tool_input_split_across_deltas_becomes_one_parsed_tool_call() {
    let mut events = vec![message_start(40)];
    events.extend(tool_use(0, "toolu_1", "get_order", &[r#"{"order"#, r#"_id": "A"#, r#"-1"}"#]));
    events.extend([message_delta("tool_use", 12), message_stop()]);
    let stub = StubAnthropic::start(Canned::sse(sse(&events))).await;

    let response = stub.provider().complete(&ask("Where is order A-1?")).await.unwrap();

    assert_eq!(
        response.tool_calls,
        vec![ToolCall { id: "toolu_1".into(), name: "get_order".into(), arguments: json!({"order_id": "A-1"}) }]
    );
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
    assert_eq!(response.usage, Some(Usage { prompt_tokens: 40, completion_tokens: 12 }));
}

#[tokio::test]
async fn parallel_tool_use_blocks_become_two_tool_calls_in_order() {
    let mut events = vec![message_start(40), text_block_start(0), text_delta(0, "Checking both."), block_stop(0)];
    events.extend(tool_use(1, "toolu_1", "get_order", &[r#"{"order_id": "A-1"}"#]));
    events.extend(tool_use(2, "toolu_2", "get_customer", &[r#"{"email":"#, r#" "a@b.c"}"#]));
    events.extend([message_delta("tool_use", 30), message_stop()]);
    let stub = StubAnthropic::start(Canned::sse(sse(&events))).await;

    let response = stub.provider().complete(&ask("Order A-1 for a@b.c?")).await.unwrap();

    assert_eq!(response.text, "Checking both.");
    assert_eq!(
        response.tool_calls,
        vec![
            ToolCall { id: "toolu_1".into(), name: "get_order".into(), arguments: json!({"order_id": "A-1"}) },
            ToolCall { id: "toolu_2".into(), name: "get_customer".into(), arguments: json!({"email": "a@b.c"}) },
        ]
    );
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn http_429_is_rate_limited_with_the_retry_after_delay() {
    let mut canned =
        Canned::status(429, r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#);
    canned.headers.push(("retry-after", "2"));
    let stub = StubAnthropic::start(canned).await;

    let err = stub.provider().stream(&ask("hi")).await.err().unwrap();

    assert!(matches!(err, LlmError::RateLimited { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn http_500_is_a_retryable_server_error() {
    let stub = StubAnthropic::start(Canned::status(500, r#"{"type":"error","error":{"type":"api_error"}}"#)).await;

    let err = stub.provider().stream(&ask("hi")).await.err().unwrap();

    assert!(matches!(err, LlmError::Server { status: 500, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn http_400_is_rejected_and_not_retried() {
    let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#;
    let stub = StubAnthropic::start(Canned::status(400, body)).await;

    let err = stub.provider().stream(&ask("hi")).await.err().unwrap();

    match &err {
        LlmError::Rejected { status: 400, message, .. } => assert!(message.contains("max_tokens: too large")),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let provider = provider_at(&format!("http://{dead_port}"));

    let err = provider.stream(&ask("hi")).await.err().unwrap();

    assert!(matches!(err, LlmError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn an_answer_slower_than_the_deadline_times_out() {
    let mut canned = Canned::sse(sse(&[message_start(1), message_delta("end_turn", 1), message_stop()]));
    canned.delay = DEADLINE * 4;
    let stub = StubAnthropic::start(canned).await;

    let err = stub.provider().stream(&ask("hi")).await.err().unwrap();

    assert_eq!(err, LlmError::Timeout { provider: "anthropic/claude-3-5-haiku-20241022".into(), after: DEADLINE });
}

#[tokio::test]
async fn unparseable_event_data_is_a_malformed_stream() {
    let body = format!(
        "{}event: content_block_delta\ndata: {{\"type\": \"content_block_delta\", \n\n",
        sse(&[message_start(1)])
    );
    let stub = StubAnthropic::start(Canned::sse(body)).await;

    let items = stream_items(&stub.provider(), &ask("hi")).await;

    assert!(matches!(last_error(&items), LlmError::MalformedStream { .. }), "{items:?}");
}

#[tokio::test]
async fn a_stream_cut_mid_tool_call_is_truncated_not_a_shorter_answer() {
    let stub = StubAnthropic::start(Canned::sse(sse(&[
        message_start(10),
        tool_use_start(0, "toolu_1", "get_order"),
        input_json_delta(0, r#"{"order_id": "#),
    ])))
    .await;
    let provider = stub.provider();

    let streamed = collect(provider.stream(&ask("hi")).await.unwrap()).await.unwrap_err();
    let completed = provider.complete(&ask("hi")).await.unwrap_err();

    assert!(matches!(streamed, LlmError::Truncated { .. }), "{streamed:?}");
    assert!(matches!(completed, LlmError::Truncated { .. }), "{completed:?}");
}

#[tokio::test]
async fn tool_input_that_is_not_json_is_invalid_tool_arguments() {
    let mut events = vec![message_start(10)];
    events.extend(tool_use(0, "toolu_1", "get_order", &[r#"{"order_id": "#, r#"A-1}"#]));
    events.extend([message_delta("tool_use", 5), message_stop()]);
    let stub = StubAnthropic::start(Canned::sse(sse(&events))).await;

    let err = stub.provider().complete(&ask("hi")).await.unwrap_err();

    assert!(matches!(&err, LlmError::InvalidToolArguments { name, .. } if name == "get_order"), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_call_to_a_tool_the_request_did_not_offer_is_unknown_tool() {
    let mut events = vec![message_start(10)];
    events.extend(tool_use(0, "toolu_1", "refund_everything", &["{}"]));
    events.extend([message_delta("tool_use", 5), message_stop()]);
    let stub = StubAnthropic::start(Canned::sse(sse(&events))).await;

    let err = stub.provider().complete(&ask("hi")).await.unwrap_err();

    assert!(matches!(&err, LlmError::UnknownTool { name, .. } if name == "refund_everything"), "{err:?}");
}

#[tokio::test]
async fn an_overloaded_error_event_is_a_retryable_server_529() {
    let stub = StubAnthropic::start(Canned::sse(sse(&[
        message_start(10),
        text_block_start(0),
        text_delta(0, "Partial"),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ])))
    .await;

    let items = stream_items(&stub.provider(), &ask("hi")).await;

    let err = last_error(&items);
    assert!(matches!(&err, LlmError::Server { status: 529, message, .. } if message == "Overloaded"), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn any_other_error_event_is_a_malformed_stream_with_its_message() {
    let stub = StubAnthropic::start(Canned::sse(sse(&[
        message_start(10),
        json!({"type": "error", "error": {"type": "api_error", "message": "Internal failure"}}),
    ])))
    .await;

    let items = stream_items(&stub.provider(), &ask("hi")).await;

    let err = last_error(&items);
    assert!(
        matches!(&err, LlmError::MalformedStream { message, .. } if message.contains("Internal failure")),
        "{err:?}"
    );
}

#[tokio::test]
async fn nothing_follows_the_error_that_ends_a_stream() {
    let mut events = vec![message_start(10)];
    events.extend(tool_use(0, "toolu_1", "refund_everything", &["{}"]));
    events.extend([text_block_start(1), text_delta(1, "after"), message_delta("tool_use", 5), message_stop()]);
    let stub = StubAnthropic::start(Canned::sse(sse(&events))).await;

    let items = stream_items(&stub.provider(), &ask("hi")).await;

    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(last_error(&items), LlmError::UnknownTool { .. }));
}
