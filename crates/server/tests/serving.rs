//! How clients reach the agent besides one request per message: background jobs (stored,
//! queued, retried, reported to a signed webhook, surviving a restart), the
//! OpenAI-compatible API, the WebSocket, and what the web pages and the console read. Real
//! HTTP, the demo's agent on the real Acme backend.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{acme_backend, demo_agent, demo_agent_with, TestServer, ADMIN_KEY};
use tokio_tungstenite::tungstenite::Message as Frame;

async fn post_json(server: &TestServer, path: &str, body: Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = server.client.post(server.url(path)).json(&body).send().await.expect("send");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

async fn get_json(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = server.client.get(server.url(path)).send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls a job until it is no longer queued or running.
async fn settled(server: &TestServer, id: &str) -> Value {
    for _ in 0..300 {
        let (status, job) = get_json(server, &format!("/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "queued" && job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not finish");
}

// ---- jobs -------------------------------------------------------------------------------

#[tokio::test]
async fn a_job_is_acknowledged_then_answered_in_the_background() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let (status, headers, job) =
        post_json(&server, "/v1/jobs", json!({ "content": "Where is my order A-10032?" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/jobs/{id}").as_str());
    assert_eq!(job["state"], "queued");
    assert_eq!(job["priority"], 1, "the standard tier's priority");

    let done = settled(&server, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1);
    let reply = &done["result"]["reply"];
    assert!(reply["content"].as_str().unwrap().contains("4833351328"), "{reply}");
    let conversation = done["conversation_id"].as_str().unwrap();
    let transcript = server.transcript(conversation).await;
    let messages = transcript["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["id"], done["message_id"]);
    assert_eq!(messages[1]["id"], reply["id"]);

    // A job continues a conversation it names.
    let (status, _, next) =
        post_json(&server, "/v1/jobs", json!({ "conversation_id": conversation, "content": "Thanks!" })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    settled(&server, next["id"].as_str().unwrap()).await;
    assert_eq!(server.transcript(conversation).await["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn bad_jobs_are_refused_with_a_code_and_nothing_is_stored() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let cases = [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({ "content": "  " }), StatusCode::UNPROCESSABLE_ENTITY, "message_empty"),
        (json!({ "content": "hi", "kind": "export" }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({ "content": "hi", "priority": 9 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            json!({ "content": "hi", "webhook_url": "ftp://example.com" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        // No signing secret is configured here, so no webhook can be promised.
        (
            json!({ "content": "hi", "webhook_url": "https://example.com/x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({ "content": "hi", "conversation_id": "00000000-0000-7000-8000-000000000000" }),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (json!({ "content": "hi", "conversation_id": "nope" }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({ "content": "hi", "customer_ref": "C".repeat(129) }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let (got, _, error) = post_json(&server, "/v1/jobs", body.clone()).await;
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "{body}: {error}");
    }
    let (status, error) = get_json(&server, "/v1/jobs/00000000-0000-7000-8000-000000000000").await;
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, error) = get_json(&server, "/v1/jobs/not-an-id").await;
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_id")));
    let (_, listed) = get_json(&server, "/v1/conversations").await;
    assert!(listed["conversations"].as_array().unwrap().is_empty(), "no refused job opened a conversation");
}

#[tokio::test]
async fn a_full_queue_says_when_to_retry_and_a_restart_runs_every_acknowledged_job_once() {
    let backend = acme_backend().await;
    // This process takes jobs in and runs none: they wait in the store.
    let intake = demo_agent_with(&backend, |c| {
        c.jobs.workers = 0;
        c.jobs.queue_capacity = 2;
    })
    .await;
    let mut accepted = Vec::new();
    for content in ["Where is my order A-10032?", "How do I reset my password?"] {
        let (status, _, job) = post_json(&intake, "/v1/jobs", json!({ "content": content })).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        accepted.push(job["id"].as_str().unwrap().to_owned());
    }
    let (status, headers, error) = post_json(&intake, "/v1/jobs", json!({ "content": "And a third?" })).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    assert_eq!(error["error"]["code"], "queue_full");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let (_, listed) = get_json(&intake, "/v1/conversations").await;
    assert_eq!(listed["conversations"].as_array().unwrap().len(), 2, "the refused job left nothing behind");

    // A restart with workers runs what the first process acknowledged.
    let backend_url = backend.clone();
    let worker = intake
        .start_again_with(move |c| {
            let demo = support::demo_config(&backend_url);
            c.backends = demo.backends;
            c.tools = demo.tools;
        })
        .await;
    for id in &accepted {
        let done = settled(&worker, id).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        let conversation = done["conversation_id"].as_str().unwrap();
        let messages = worker.transcript(conversation).await["messages"].as_array().unwrap().clone();
        assert_eq!(messages.len(), 2, "answered once: {messages:?}");
    }
}

#[tokio::test]
async fn a_finished_job_is_posted_to_its_webhook_signed() {
    use hmac::{Hmac, Mac};
    let received: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let sink = Arc::clone(&received);
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let backend = acme_backend().await;
    let secret = "a shared secret of the company's";
    let server = demo_agent_with(&backend, |c| c.secrets.webhook_secret = Some(secret.to_owned().into())).await;
    let (status, _, job) =
        post_json(&server, "/v1/jobs", json!({ "content": "Where is my order A-10032?", "webhook_url": hook_url }))
            .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap();
    settled(&server, id).await;
    let mut delivered = None;
    for _ in 0..100 {
        if let Some(first) = received.lock().unwrap().first().cloned() {
            delivered = Some(first);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (headers, body) = delivered.expect("the webhook was called");
    assert_eq!(headers["concierge-event"], "job.succeeded");
    let signature = headers["concierge-signature"].to_str().unwrap();
    let (t, v1) = signature.split_once(',').unwrap();
    let timestamp = t.strip_prefix("t=").unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1.strip_prefix("v1=").unwrap(), expected, "signed with the secret over timestamp.body");
    let posted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(posted["job"]["id"], id);
    assert_eq!(posted["job"]["state"], "succeeded");
}

// ---- the OpenAI-compatible API ------------------------------------------------------------

#[tokio::test]
async fn chat_completions_answer_as_the_agent_and_continue_a_conversation() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let (status, models) = get_json(&server, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["data"][0]["id"], "acme-support");

    let (status, headers, completion) = post_json(
        &server,
        "/v1/chat/completions",
        json!({
            "model": "acme-support",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "Hi, I ordered something last week." },
                { "role": "assistant", "content": "Happy to help. What is your order number?" },
                { "role": "user", "content": "Where is my order A-10032?" },
            ],
            "temperature": 0,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{completion}");
    assert_eq!(completion["object"], "chat.completion");
    let answer = completion["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("4833351328"), "{answer}");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["total_tokens"], 0, "a tool's answer spends no model tokens");
    let conversation = headers["x-conversation-id"].to_str().unwrap().to_owned();
    assert_eq!(completion["conversation_id"], conversation.as_str());
    let messages = server.transcript(&conversation).await["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 4, "the history, the question and the answer (no system message)");
    assert_eq!(messages[0]["metadata"]["imported"], true);

    // The same conversation goes on when the client names it.
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .header("x-conversation-id", &conversation)
        .json(&json!({ "model": "acme-support", "messages": [{ "role": "user", "content": "Thanks!" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.transcript(&conversation).await["messages"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn a_streamed_completion_is_chunks_then_usage_then_done() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&json!({
            "model": "acme-support",
            "messages": [{ "role": "user", "content": "Where is my order A-10032?" }],
            "stream": true,
            "stream_options": { "include_usage": true },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(text.contains("4833351328"), "{text}");
    let finish = chunks.iter().position(|c| c["choices"][0]["finish_reason"] == "stop").expect("a stop chunk");
    let usage = chunks.last().unwrap();
    assert!(finish < chunks.len() - 1);
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].is_u64());
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
}

#[tokio::test]
async fn chat_completions_refuse_what_they_cannot_honour() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let user = json!([{ "role": "user", "content": "hi" }]);
    let cases = [
        (json!({ "model": "gpt-4o", "messages": user }), StatusCode::NOT_FOUND, "model_not_found"),
        (json!({ "messages": user }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({ "model": "acme-support", "messages": [] }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            json!({ "model": "acme-support", "messages": user, "n": 3 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_parameter",
        ),
        (
            json!({ "model": "acme-support", "messages": [{ "role": "user", "content": "" }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "message_empty",
        ),
    ];
    for (body, status, code) in cases {
        let (got, _, error) = post_json(&server, "/v1/chat/completions", body.clone()).await;
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "{body}: {error}");
    }
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .header("x-conversation-id", "not-an-id")
        .json(&json!({ "model": "acme-support", "messages": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (_, listed) = get_json(&server, "/v1/conversations").await;
    assert!(listed["conversations"].as_array().unwrap().is_empty(), "no refused request opened a conversation");
}

// ---- WebSocket --------------------------------------------------------------------------

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer) -> Socket {
    connect_with(server, ADMIN_KEY).await.expect("the WebSocket opens")
}

/// A WebSocket opened the way a browser does: the key in a `bearer.` subprotocol.
async fn connect_with(server: &TestServer, key: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = server.url("/v1/ws").replacen("http", "ws", 1);
    let mut request = url.into_client_request().expect("a WebSocket request");
    let protocols = format!("concierge.v1, bearer.{key}");
    request.headers_mut().insert("sec-websocket-protocol", protocols.parse().expect("header"));
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(response.headers()["sec-websocket-protocol"], "concierge.v1");
    Ok(socket)
}

/// The next JSON event, skipping pings.
async fn next_event(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("an event in time")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Frame::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Frame::Text(frame.to_string().into())).await.expect("send");
}

#[tokio::test]
async fn a_websocket_carries_a_turns_events_and_survives_bad_frames() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let mut socket = connect(&server).await;

    send(&mut socket, json!({ "type": "create_conversation", "ref": "c" })).await;
    let created = next_event(&mut socket).await;
    assert_eq!((created["type"].as_str(), created["ref"].as_str()), (Some("conversation"), Some("c")));
    let id = created["conversation"]["id"].as_str().unwrap().to_owned();

    // Bad frames are answered and the connection stays.
    for (frame, code) in [
        (Frame::Text("{not json".into()), "malformed_json"),
        (Frame::Text(json!({ "type": "subscribe" }).to_string().into()), "unknown_type"),
        (Frame::Text(json!({ "type": "message", "content": "hi" }).to_string().into()), "invalid_body"),
        (Frame::Binary(vec![1, 2, 3].into()), "binary_not_supported"),
        (Frame::Text(json!({ "type": "create_conversation", "customer_ref": "" }).to_string().into()), "invalid_body"),
        (
            Frame::Text(json!({ "type": "message", "conversation_id": id, "content": "" }).to_string().into()),
            "message_empty",
        ),
    ] {
        socket.send(frame).await.unwrap();
        let error = next_event(&mut socket).await;
        assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some(code)), "{error}");
    }
    send(&mut socket, json!({ "type": "ping", "ref": "p" })).await;
    assert_eq!(next_event(&mut socket).await["type"], "pong");

    send(
        &mut socket,
        json!({ "type": "message", "conversation_id": id, "content": "Where is my order A-10032?", "ref": "m1" }),
    )
    .await;
    let mut kinds = Vec::new();
    let mut text = String::new();
    loop {
        let event = next_event(&mut socket).await;
        assert_eq!(event["ref"], "m1", "{event}");
        assert_eq!(event["conversation_id"], id.as_str());
        let kind = event["type"].as_str().unwrap().to_owned();
        if kind == "token" {
            text.push_str(event["text"].as_str().unwrap());
        }
        kinds.push(kind.clone());
        if kind == "done" {
            break;
        }
    }
    let at = |k: &str| kinds.iter().position(|x| x == k).unwrap_or_else(|| panic!("{k} in {kinds:?}"));
    assert!(at("meta") < at("tool_started") && at("tool_finished") < at("token"), "{kinds:?}");
    assert!(text.contains("4833351328"));
    let stored = server.transcript(&id).await["messages"].as_array().unwrap().clone();
    assert_eq!(stored[1]["content"].as_str(), Some(text.as_str()));
}

#[tokio::test]
async fn a_websocket_frame_over_the_limit_closes_with_1009() {
    let backend = acme_backend().await;
    let server = demo_agent_with(&backend, |c| c.server.max_body_bytes = 4096).await;
    let mut socket = connect(&server).await;
    let huge = json!({ "type": "ping", "ref": "x".repeat(10_000) }).to_string();
    let _ = socket.send(Frame::Text(huge.into())).await;
    let mut code = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        match frame {
            Ok(Frame::Close(Some(close))) => {
                code = Some(u16::from(close.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(1009));
    // The server is unharmed.
    assert_eq!(get_json(&server, "/healthz").await.0, StatusCode::OK);
}

// ---- what the pages read ------------------------------------------------------------------

#[tokio::test]
async fn ratings_listings_and_live_figures() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let (_, exchange) = server.say(&id, "Where is my order A-10032?").await;
    let reply = exchange["reply"]["id"].as_str().unwrap().to_owned();
    let question = exchange["message"]["id"].as_str().unwrap().to_owned();
    server.say(&id, "I want to talk to a person").await;

    let (status, _, rated) =
        post_json(&server, "/v1/feedback", json!({ "message_id": reply, "rating": -1, "comment": "Too slow." })).await;
    assert_eq!(status, StatusCode::CREATED, "{rated}");
    assert_eq!(rated["feedback"]["conversation_id"], id.as_str());
    for (body, code) in [
        (json!({ "message_id": reply, "rating": 5 }), "invalid_body"),
        (json!({ "message_id": question, "rating": 1 }), "invalid_body"),
        (json!({ "message_id": "00000000-0000-7000-8000-000000000000", "rating": 1 }), "not_found"),
        (json!({ "message_id": reply, "rating": 1, "comment": "bad\u{0007}" }), "invalid_body"),
    ] {
        let (status, _, error) = post_json(&server, "/v1/feedback", body.clone()).await;
        assert!(status.is_client_error(), "{body}");
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
    }

    let (_, feedback) = get_json(&server, "/v1/feedback?limit=10").await;
    assert_eq!(feedback["feedback"][0]["comment"], "Too slow.");
    let (_, conversations) = get_json(&server, "/v1/conversations?limit=5").await;
    assert_eq!(conversations["conversations"][0]["id"], id.as_str());
    let (_, tickets) = get_json(&server, "/v1/tickets?status=open").await;
    assert_eq!(tickets["tickets"].as_array().unwrap().len(), 1, "{tickets}");
    for bad in
        ["/v1/tickets?status=lost", "/v1/conversations?limit=0", "/v1/conversations?limit=9999", "/v1/feedback?x=1"]
    {
        let (status, error) = get_json(&server, bad).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query")),
            "{bad}"
        );
    }

    let (status, stats) = get_json(&server, "/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["resolution_rate"], 0.5);
    assert_eq!(stats["escalation_rate"], 0.5);
    assert_eq!(stats["thumbs_down_rate"], 1.0);
    assert!(stats["latency_ms"]["p95"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["series"].as_array().unwrap().len(), 60);
}

#[tokio::test]
async fn the_chat_and_the_console_are_served_from_the_binary() {
    let server = TestServer::start().await;
    for (path, kind) in [("/", "text/html"), ("/console", "text/html"), ("/web/style.css", "text/css")] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert!(response.headers().contains_key("content-security-policy"));
    }
    let page = server.client.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/web/chat.js"), "the chat page loads its script");
    for bad in ["/web/..%2FCargo.toml", "/web/.hidden", "/web/missing.js"] {
        let response = server.client.get(server.url(bad)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{bad}");
    }
}

/// The official `openai` Python package and LangChain's `ChatOpenAI`, installed pinned from
/// PyPI by `scripts/client-venv`, each streaming and not, against the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_and_langchain_talk_to_the_agent() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = tokio::process::Command::new(root.join("scripts/client-venv")).output().await.expect("run client-venv");
    assert!(venv.status.success(), "the client venv: {}", String::from_utf8_lossy(&venv.stderr));
    let python = String::from_utf8(venv.stdout).unwrap().trim().to_owned();

    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let run = tokio::process::Command::new(python)
        .arg(root.join("tests/clients/openai_clients.py"))
        .env("CONCIERGE_API_KEY", ADMIN_KEY)
        .arg(&server.base)
        .arg("acme-support")
        .output()
        .await
        .expect("run the clients");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{out}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.contains("all client checks passed"), "{out}");
}

#[tokio::test]
async fn a_follower_of_a_conversation_hears_each_message_stored_in_it() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let mut events = server
        .client
        .get(server.url(&format!("/v1/conversations/{id}/events")))
        .send()
        .await
        .expect("follow")
        .bytes_stream();
    // A job answers in the background: the follower hears the question and the reply.
    let (status, _, _) =
        post_json(&server, "/v1/jobs", json!({ "conversation_id": id, "content": "Where is my order A-10032?" })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut buffer = String::new();
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let chunk =
            tokio::time::timeout(Duration::from_secs(60), events.next()).await.expect("in time").unwrap().unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.contains("event: message") {
                let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                heard.push(serde_json::from_str::<Value>(data).unwrap());
            }
        }
    }
    assert_eq!((heard[0]["role"].as_str(), heard[1]["role"].as_str()), (Some("user"), Some("assistant")));
    assert!(heard[1]["content"].as_str().unwrap().contains("4833351328"));

    let (status, error) = get_json(&server, "/v1/conversations/00000000-0000-7000-8000-000000000000/events").await;
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn the_openapi_spec_describes_every_route_and_its_docs_page_is_local() {
    let server = TestServer::start().await;
    let (status, spec) = get_json(&server, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{}", spec["openapi"]);
    let paths = spec["paths"].as_object().unwrap();
    let routes = [
        ("/v1/conversations", &["get", "post"][..]),
        ("/v1/conversations/{id}", &["get"]),
        ("/v1/conversations/{id}/messages", &["post"]),
        ("/v1/conversations/{id}/events", &["get"]),
        ("/v1/ws", &["get"]),
        ("/v1/approvals", &["get"]),
        ("/v1/approvals/{id}", &["post"]),
        ("/v1/documents", &["get", "post"]),
        ("/v1/documents/{id}", &["get", "delete"]),
        ("/v1/search", &["get"]),
        ("/v1/tickets", &["get"]),
        ("/v1/feedback", &["get", "post"]),
        ("/v1/stats", &["get"]),
        ("/metrics", &["get"]),
        ("/v1/jobs", &["post"]),
        ("/v1/jobs/{id}", &["get"]),
        ("/v1/chat/completions", &["post"]),
        ("/v1/models", &["get"]),
        ("/v1/keys", &["get", "post"]),
        ("/v1/keys/{prefix}", &["delete"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
    ];
    for (path, methods) in routes {
        for method in methods {
            let operation = &paths.get(path).unwrap_or_else(|| panic!("{path} is described"))[method];
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
        }
    }
    assert_eq!(paths.len(), routes.len(), "every described path is a route: {:?}", paths.keys().collect::<Vec<_>>());
    // Every operation but health names the credential it needs.
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "{}", spec["components"]);
    assert!(paths["/v1/stats"]["get"]["security"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(paths["/healthz"]["get"].get("security").is_none_or(Value::is_null));
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for schema in ["Conversation", "Message", "Approval", "JobView", "ErrorBody", "StatsReport", "ChatRequest"] {
        assert!(schemas.contains_key(schema), "{schema}");
    }

    let docs = server.client.get(server.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let page = docs.text().await.unwrap();
    assert!(page.contains("swagger"), "the Swagger UI page");
    assert!(!page.contains("https://") && !page.contains("http://"), "nothing is loaded from elsewhere");
}

// ---- connections --------------------------------------------------------------------------

/// Connections that send nothing, or half a request head, hold a place only until the
/// header timeout; with every place taken a new client waits for one and is then served.
#[tokio::test]
async fn connections_that_send_nothing_hold_a_place_only_until_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(|c| {
        c.server.max_connections = 8;
        c.server.header_timeout_secs = 1;
    })
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for i in 0..8 {
        let mut connection = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        if i == 0 {
            // A head sent a piece at a time, never finished.
            connection.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        }
        idle.push(connection);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    let response = reqwest::Client::new().get(server.url("/healthz")).send().await.expect("served in the end");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(400), "every place was taken: {:?}", started.elapsed());

    for mut connection in idle {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), connection.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the server closed the idle connection");
    }
}

/// An upgraded connection keeps its place: idle WebSockets count against
/// `server.max_connections` until they close, however many there are.
#[tokio::test]
async fn a_websocket_keeps_its_place_until_it_closes() {
    let server = TestServer::start_with(|c| c.server.max_connections = 3).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut socket = connect(&server).await;
        send(&mut socket, json!({ "type": "ping" })).await;
        assert_eq!(next_event(&mut socket).await["type"], "pong");
        sockets.push(socket);
    }
    let client = reqwest::Client::new();
    let waiting = tokio::spawn({
        let url = server.url("/healthz");
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "three WebSockets hold every place");
    let mut socket = sockets.pop().unwrap();
    socket.close(None).await.expect("close");
    drop(socket);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("served once a place is free");
    assert_eq!(status.unwrap().unwrap(), StatusCode::OK);
}
