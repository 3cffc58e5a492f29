//! The HTTP API, spoken to over real HTTP: a real server on a random port, a fresh SQLite
//! store per test, and the Acme knowledge base.

mod support;

use std::path::Path;

use concierge_server::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestServer;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn a_question_is_stored_answered_with_citations_and_kept_in_the_transcript() {
    let server = TestServer::start().await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "How do I reset my password?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"]["role"], "user");
    assert_eq!(body["message"]["seq"], 1);
    let reply = &body["reply"];
    assert_eq!(reply["role"], "assistant");
    assert_eq!(reply["seq"], 2);
    assert_eq!(reply["metadata"]["answered_by"], "knowledge_base_quote");
    assert_eq!(reply["metadata"]["citations"][0]["article_id"], "password-reset");
    assert!(reply["content"].as_str().unwrap().contains("[1]"));

    let transcript: Value =
        server.client.get(server.url(&format!("/v1/conversations/{id}"))).send().await.unwrap().json().await.unwrap();
    let messages = transcript["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "How do I reset my password?");
    assert_eq!(messages[1]["id"], reply["id"]);
}

/// Serves the real Acme backend on a random port.
async fn acme_backend() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme");
    let data = concierge_acme::AcmeData::load(&root.join("backend")).expect("seed data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(concierge_acme::serve(listener, data, std::future::pending()));
    format!("http://{addr}")
}

/// The demo's configuration file, with the store, port and backend moved for the test.
fn demo_config(backend: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/concierge.toml");
    let mut config: Config = toml::from_str(&std::fs::read_to_string(path).expect("demo config")).expect("parses");
    config.backends.get_mut("acme").expect("acme").url = backend.to_owned();
    config
}

#[tokio::test]
async fn an_order_number_in_the_message_is_looked_up_in_the_backend() {
    let backend = acme_backend().await;
    let server = TestServer::start_with(|c| {
        let demo = demo_config(&backend);
        c.backends = demo.backends;
        c.tools = demo.tools;
    })
    .await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "Where is my order A-10024?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = &body["reply"];
    assert_eq!(reply["metadata"]["answered_by"], "tool_lookup");
    assert_eq!(reply["metadata"]["tool"]["name"], "get_order");
    assert_eq!(reply["metadata"]["tool"]["outcome"], "ok");
    let text = reply["content"].as_str().unwrap();
    assert!(text.contains("A-10024 (Acme Nexus Smart Home Hub) is delayed"), "{text}");
    assert!(text.contains("4832513496"), "tracking number is given: {text}");

    let (_, body) = server.say(&id, "and A-99999?").await;
    assert_eq!(body["reply"]["metadata"]["tool"]["outcome"], "error");
    assert!(body["reply"]["content"].as_str().unwrap().contains("couldn't find an order A-99999"));
}

#[tokio::test]
async fn a_question_the_knowledge_base_cannot_answer_says_so() {
    let server = TestServer::start().await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "qwxz zzyzx").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reply"]["metadata"]["grounded"], false);
    assert_eq!(body["reply"]["metadata"]["citations"], json!([]));
}

#[tokio::test]
async fn messages_are_routed_and_one_out_of_scope_that_the_help_centre_cannot_answer_is_declined() {
    let intents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/intents.toml");
    let server = TestServer::start_with(|c| c.router.intents = Some(intents)).await;
    let id = server.create_conversation().await;

    let (status, body) = server.say(&id, "I forgot my password and now I can't log in").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = &body["reply"]["metadata"];
    assert_eq!(reply["routing"]["decision"], "intent", "{reply}");
    assert_eq!(reply["routing"]["intent"]["intent"], "password_reset", "{reply}");
    assert_eq!(reply["routing"]["specialist"], "account");
    assert_eq!(reply["citations"][0]["article_id"], "password-reset", "{reply}");

    let (_, body) = server.say(&id, "Where is my package? And also how do I turn on two-factor authentication?").await;
    let routing = &body["reply"]["metadata"]["routing"];
    assert_eq!(routing["decision"], "several", "{routing}");
    let named: Vec<&str> =
        routing["intents"].as_array().unwrap().iter().map(|i| i[0]["intent"].as_str().unwrap()).collect();
    assert_eq!(named, ["order_status", "two_factor"], "{routing}");

    let (_, body) = server.say(&id, "What's a good recipe for lasagne?").await;
    let reply = &body["reply"];
    assert_eq!(reply["metadata"]["routing"]["decision"], "out_of_scope", "{reply}");
    assert_eq!(reply["metadata"]["answered_by"], "out_of_scope", "{reply}");
    assert_eq!(reply["content"], concierge_server::conversation::OUT_OF_SCOPE_REPLY);
    assert_eq!(reply["metadata"]["citations"], json!([]));
}

#[tokio::test]
async fn conversations_take_an_optional_customer_and_channel() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post_raw("/v1/conversations", Some("application/json"), r#"{"customer_ref":"C-1001","channel":"web"}"#)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["customer_ref"], "C-1001");
    assert_eq!(body["channel"], "web");
    assert_eq!(body["status"], "open");
    let (status, body) = server.post_raw("/v1/conversations", Some("application/json"), r#"{"channel":"fax"}"#).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
}

#[tokio::test]
async fn malformed_bodies_get_4xx_with_a_code() {
    let server = TestServer::start().await;
    let id = server.create_conversation().await;
    let path = format!("/v1/conversations/{id}/messages");
    let json = Some("application/json");
    // (case, content type, body, expected status, expected code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        ("broken JSON", json, b"{\"content\": ".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("not JSON at all", json, b"hello".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        (
            "wrong content type",
            Some("text/plain"),
            br#"{"content":"hi"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            b"content=hi".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            br#"{"content":"hi"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        ("missing field", json, b"{}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            "extra field",
            json,
            br#"{"content":"hi","admin":true}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        ("wrong type", json, br#"{"content":42}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("array body", json, b"[1,2]".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("invalid UTF-8", json, b"{\"content\":\"\xff\xfe\"}".to_vec(), StatusCode::BAD_REQUEST, "invalid_utf8"),
        ("empty message", json, br#"{"content":"   "}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "message_empty"),
        (
            "control characters",
            json,
            br#"{"content":"a\u0000b"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "message_invalid_characters",
        ),
    ];
    for (name, content_type, body, want_status, want_code) in cases {
        let (status, answer) = server.post_raw(&path, content_type, body).await;
        assert_eq!((status, code(&answer)), (want_status, want_code), "case: {name}; body: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "case {name} has a message");
    }
    // None of the refused messages was stored.
    let transcript: Value =
        server.client.get(server.url(&format!("/v1/conversations/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(transcript["messages"], json!([]));
}

#[tokio::test]
async fn over_long_messages_and_oversize_bodies_are_refused() {
    let server = TestServer::start_with(|c| {
        c.server.max_message_chars = 50;
        c.server.max_body_bytes = 4096;
    })
    .await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, &"é".repeat(51)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "message_too_long"));
    assert!(body["error"]["message"].as_str().unwrap().contains("limit is 50"));
    let (status, _) = server.say(&id, &"é".repeat(50)).await;
    assert_eq!(status, StatusCode::OK, "exactly at the limit is fine");
    let (status, body) = server.say(&id, &"x".repeat(10_000)).await;
    assert_eq!((status, code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"));
}

#[tokio::test]
async fn unknown_ids_routes_and_methods_are_4xx() {
    let server = TestServer::start().await;
    let unknown = "01a200ee-1261-7276-a82c-f37dc9105983";
    let (status, body) = server.say(unknown, "hello").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let response = server.client.get(server.url(&format!("/v1/conversations/{unknown}"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (status, body) = server.say("not-a-uuid", "hello").await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_id"));
    let response = server.client.get(server.url("/v1/nothing-here")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(&response.json().await.unwrap()), "route_not_found");
    let response = server.client.delete(server.url("/v1/conversations")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&response.json().await.unwrap()), "method_not_allowed");
}

#[tokio::test]
async fn concurrent_messages_to_one_conversation_are_all_kept_in_order() {
    let server = TestServer::start().await;
    let id = server.create_conversation().await;
    let sends = (0..20).map(|i| {
        let server = &server;
        let id = id.clone();
        async move { server.say(&id, &format!("question number {i} about refunds")).await }
    });
    for (status, body) in futures::future::join_all(sends).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let transcript: Value =
        server.client.get(server.url(&format!("/v1/conversations/{id}"))).send().await.unwrap().json().await.unwrap();
    let seqs: Vec<i64> =
        transcript["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn health_and_readiness_answer_and_every_response_has_a_request_id() {
    let server = TestServer::start().await;
    let response = server.client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = server.client.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({ "status": "ready", "store": "sqlite" }));
}
