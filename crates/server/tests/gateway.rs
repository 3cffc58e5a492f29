//! The model gateway through the real server: a `model` naming one of `llm.gateway`'s
//! providers goes to that provider, here an OpenAI-compatible stand-in on a real socket
//! that answers each request with the next step of a script, and comes back in OpenAI's
//! format, streamed or whole, with the provider's failures as statuses a client can act on.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use concierge_server::config::{OpenAiProviderConfig, ProviderConfig};
use serde_json::{json, Value};
use support::TestServer;

/// One answer of the stand-in.
enum Step {
    Text(&'static str),
    /// A call whose arguments arrive in two pieces, as real providers split them.
    Call(&'static str, Value),
    /// An error status, with a Retry-After when given.
    Status(u16, Option<&'static str>),
    /// A stream that stops in the middle of a tool call, with no finish; some text first
    /// when `after_text`.
    Cut {
        after_text: bool,
    },
}

/// Test double: an OpenAI-compatible chat completions server playing `script`, one step
/// per request (HTTP 500 once it runs out), keeping every request body.
struct ScriptedUpstream {
    script: Mutex<VecDeque<Step>>,
    requests: Mutex<Vec<Value>>,
}

impl ScriptedUpstream {
    async fn start(script: Vec<Step>) -> (Arc<Self>, String) {
        let upstream = Arc::new(Self { script: Mutex::new(script.into()), requests: Mutex::new(Vec::new()) });
        let app = Router::new().route("/v1/chat/completions", post(answer)).with_state(Arc::clone(&upstream));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (upstream, format!("http://{addr}/v1"))
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(State(upstream): State<Arc<ScriptedUpstream>>, Json(body): Json<Value>) -> Response {
    upstream.requests.lock().unwrap().push(body);
    let step = upstream.script.lock().unwrap().pop_front().unwrap_or(Step::Status(500, None));
    let delta =
        |delta: Value, finish: Value| json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
    let whole = !matches!(step, Step::Cut { .. });
    let chunks = match step {
        Step::Status(status, retry_after) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), "scripted failure").into_response();
            if let Some(after) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, after.parse().unwrap());
            }
            return response;
        }
        Step::Text(text) => {
            let (first, rest) = text.split_at(text.len() / 2);
            vec![
                delta(json!({ "role": "assistant", "content": first }), Value::Null),
                delta(json!({ "content": rest }), Value::Null),
                delta(json!({}), json!("stop")),
            ]
        }
        Step::Call(name, arguments) => {
            let arguments = arguments.to_string();
            let (first, rest) = arguments.split_at(arguments.len() / 2);
            vec![
                delta(
                    json!({ "role": "assistant", "tool_calls": [
                        { "index": 0, "id": "call_1", "type": "function", "function": { "name": name, "arguments": first } }
                    ] }),
                    Value::Null,
                ),
                delta(json!({ "tool_calls": [{ "index": 0, "function": { "arguments": rest } }] }), Value::Null),
                delta(json!({}), json!("tool_calls")),
            ]
        }
        Step::Cut { after_text } => {
            let mut chunks = Vec::new();
            if after_text {
                chunks.push(delta(json!({ "role": "assistant", "content": "Let me check." }), Value::Null));
            }
            chunks.push(delta(
                json!({ "tool_calls": [
                    { "index": 0, "id": "call_1", "type": "function", "function": { "name": "order_status", "arguments": "{\"order_" } }
                ] }),
                Value::Null,
            ));
            chunks
        }
    };
    let mut sse: String = chunks.iter().map(|chunk| format!("data: {chunk}\n\n")).collect();
    if whole {
        sse.push_str(&format!(
            "data: {}\n\n",
            json!({ "choices": [], "usage": { "prompt_tokens": 31, "completion_tokens": 9 } })
        ));
        sse.push_str("data: [DONE]\n\n");
    }
    ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
}

/// A server with no agent model whose gateway offers `upstream`, on the stand-in, retrying
/// never and opening its breaker after `threshold` failures in a row.
async fn gateway(script: Vec<Step>, threshold: u32) -> (Arc<ScriptedUpstream>, TestServer) {
    let (upstream, url) = ScriptedUpstream::start(script).await;
    let server = TestServer::start_with(|c| {
        let provider =
            OpenAiProviderConfig { base_url: url, model: "scripted-2".into(), api_key_env: None, api_key: None };
        c.llm.providers.insert("upstream".into(), ProviderConfig::Openai(provider));
        c.llm.gateway = vec!["upstream".into()];
        c.llm.retry.max_attempts = 1;
        c.llm.breaker.failure_threshold = threshold;
        c.llm.breaker.open_for = Duration::from_secs(60);
    })
    .await;
    (upstream, server)
}

async fn complete(server: &TestServer, body: Value) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = server.client.post(server.url("/v1/chat/completions")).json(&body).send().await.expect("send");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.expect("body"))
}

fn data_lines(body: &str) -> Vec<String> {
    body.lines().filter_map(|line| line.strip_prefix("data: ")).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_gateway_model_is_listed_and_answers_as_its_provider() {
    let (upstream, server) = gateway(vec![Step::Text("Your parcel is on its way.")], 5).await;
    let models: Value = server.client.get(server.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["concierge", "upstream"]);
    assert_eq!(models["data"][1]["owned_by"], "openai/scripted-2");

    let (status, _, body) = complete(
        &server,
        json!({
            "model": "upstream",
            "messages": [{ "role": "system", "content": "Be brief." }, { "role": "user", "content": "Where is my parcel?" }],
            "temperature": 0.1, "max_tokens": 30, "stop": ["\n\n"], "seed": 3, "top_p": 0.5,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let completion: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "upstream");
    assert_eq!(completion["choices"][0]["message"]["content"], "Your parcel is on its way.");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"], json!({ "prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40 }));

    // The provider got the request as sent, under its own pinned model id.
    let sent = &upstream.requests()[0];
    assert_eq!(sent["model"], "scripted-2");
    assert_eq!(sent["messages"][0], json!({ "role": "system", "content": "Be brief." }));
    assert_eq!(sent["messages"][1]["content"], "Where is my parcel?");
    assert_eq!((sent["max_tokens"].as_u64(), sent["seed"].as_u64()), (Some(30), Some(3)));
    assert!((sent["temperature"].as_f64().unwrap() - 0.1).abs() < 1e-6, "{sent}");
    assert_eq!(sent["stop"], json!(["\n\n"]));

    // The call is in the usage ledger (written after the answer, off its path).
    let store = concierge_store::open(&server.store_url).await.expect("store");
    let tenant = concierge_core::TenantId::try_from("default".to_owned()).unwrap();
    let since = concierge_core::now() - chrono::Duration::hours(1);
    let mut summary = store.usage_summary(&tenant, since).await.unwrap();
    for _ in 0..50 {
        if summary.calls > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        summary = store.usage_summary(&tenant, since).await.unwrap();
    }
    assert_eq!((summary.calls, summary.prompt_tokens, summary.completion_tokens), (1, 31, 9));
}

/// The text of a stream's chunks, joined.
fn streamed_text(lines: &[String]) -> String {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_whole_then_usage_then_done() {
    let (upstream, server) = gateway(vec![Step::Call("order_status", json!({ "order_id": "A-10032" }))], 5).await;
    let (status, headers, body) = complete(
        &server,
        json!({
            "model": "upstream",
            "stream": true,
            "stream_options": { "include_usage": true },
            "messages": [
                { "role": "user", "content": "Where is A-10032?" },
                { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_0", "type": "function",
                    "function": { "name": "order_status", "arguments": "{\"order_id\":\"A-1\"}" } }] },
                { "role": "tool", "tool_call_id": "call_0", "content": "{\"error\":\"no such order\"}" },
                { "role": "user", "content": "Sorry, A-10032." },
            ],
            "tools": [{ "type": "function", "function": { "name": "order_status", "description": "An order's status",
                "parameters": { "type": "object", "properties": { "order_id": { "type": "string" } }, "required": ["order_id"] } } }],
            "tool_choice": "required",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    let lines = data_lines(&body);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = lines[..lines.len() - 1].iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let call = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!((call["index"].as_u64(), call["id"].as_str()), (Some(0), Some("call_1")));
    assert_eq!(call["function"]["name"], "order_status");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({ "order_id": "A-10032" }), "whole, in one delta");
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[3]["choices"], json!([]));
    assert_eq!(chunks[3]["usage"]["total_tokens"], 40);
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"] && c["object"] == "chat.completion.chunk"));

    // The earlier call and its result reached the provider as calls and results.
    let sent = &upstream.requests()[0];
    assert_eq!(sent["messages"][1]["tool_calls"][0]["function"]["name"], "order_status");
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_0");
    assert_eq!(sent["tools"][0]["function"]["name"], "order_status");
    assert_eq!(sent["tool_choice"], "required");
}

#[tokio::test]
async fn personal_data_is_hidden_from_the_provider_and_from_the_client_split_or_not() {
    let said = "Your card 4111 1111 1111 1111 is on file.";
    let (upstream, server) = gateway(vec![Step::Text(said), Step::Text(said)], 5).await;
    let asked = "My card is 4111111111111111 and my email ana@example.com";
    let body = |stream: bool| json!({ "model": "upstream", "stream": stream, "messages": [{ "role": "user", "content": asked }] });

    let (status, _, streamed) = complete(&server, body(true)).await;
    assert_eq!(status, StatusCode::OK, "{streamed}");
    // The stand-in sends the number in two deltas; neither half reaches the client.
    assert_eq!(streamed_text(&data_lines(&streamed)), "Your card [CARD] is on file.");
    assert!(!streamed.contains("4111") && !streamed.contains(" 1111"), "{streamed}");

    let (status, _, whole) = complete(&server, body(false)).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let whole: Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(whole["choices"][0]["message"]["content"], "Your card [CARD] is on file.");

    for sent in upstream.requests() {
        assert_eq!(sent["messages"][0]["content"], "My card is [CARD] and my email [EMAIL]", "{sent}");
    }
}

#[tokio::test]
async fn a_stream_cut_short_is_an_error_and_never_ends_in_done() {
    let (_, server) = gateway(vec![Step::Cut { after_text: false }, Step::Cut { after_text: true }], 5).await;
    let ask = json!({ "model": "upstream", "stream": true, "messages": [{ "role": "user", "content": "Where is A-10032?" }],
        "tools": [{ "type": "function", "function": { "name": "order_status" } }] });

    // Cut before anything could be sent: an error status, no stream.
    let (status, _, body) = complete(&server, ask.clone()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");

    // Cut after the text began: the stream's last word is an error.
    let (status, _, body) = complete(&server, ask).await;
    assert_eq!(status, StatusCode::OK, "the stream had begun");
    let lines = data_lines(&body);
    assert_eq!(streamed_text(&lines), "Let me check.", "what was said before the cut is sent: {body}");
    assert!(!lines.iter().any(|l| l == "[DONE]"), "{body}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_failed", "{body}");
    assert!(!body.contains("tool_calls"), "half a call is never handed out: {body}");
    assert!(!body.contains("scripted-2"), "the provider's detail stays in the log: {body}");
}

#[tokio::test]
async fn a_providers_failures_are_statuses_a_client_can_act_on() {
    let script = vec![
        Step::Status(429, Some("7")),
        Step::Status(400, None),
        Step::Status(500, None),
        Step::Status(503, None),
        Step::Text("never reached"),
    ];
    let (upstream, server) = gateway(script, 2).await;
    let ask = json!({ "model": "upstream", "messages": [{ "role": "user", "content": "Hello?" }] });
    let code = |body: &str| serde_json::from_str::<Value>(body).unwrap()["error"]["code"].as_str().unwrap().to_owned();

    let (status, headers, body) = complete(&server, ask.clone()).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited"));
    assert_eq!(headers[header::RETRY_AFTER], "7", "the provider's own wait");

    let (status, _, body) = complete(&server, ask.clone()).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::BAD_REQUEST, "upstream_rejected"));

    let (status, _, body) = complete(&server, ask.clone()).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::BAD_GATEWAY, "upstream_failed"));
    assert!(!body.contains("scripted failure"), "a provider's failure stays in the log: {body}");

    // Two server failures in a row: the breaker opens and the provider is left alone.
    let (status, _, _) = complete(&server, ask.clone()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let before = upstream.requests().len();
    let (status, headers, body) = complete(&server, ask.clone()).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"));
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(upstream.requests().len(), before, "an open breaker calls nobody");
    // The process stays ready, and says which provider it is doing without.
    let response = server.client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    let open: Vec<&Value> = ready["models"].as_array().unwrap().iter().filter(|m| m["breaker"] == "open").collect();
    assert_eq!(open.len(), 1, "{ready}");

    // Bad requests never reach the provider.
    for (body, expected) in [
        (
            json!({ "model": "upstream", "n": 2, "messages": [{ "role": "user", "content": "a" }] }),
            "unsupported_parameter",
        ),
        (json!({ "model": "upstream", "messages": [{ "role": "tool", "content": "a" }] }), "invalid_body"),
        (json!({ "model": "upstreem", "messages": [{ "role": "user", "content": "a" }] }), "model_not_found"),
    ] {
        let (status, _, text) = complete(&server, body).await;
        assert!(status.is_client_error(), "{status} {text}");
        assert_eq!(code(&text), expected);
    }
    assert_eq!(upstream.requests().len(), before);
}
