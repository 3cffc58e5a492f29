//! A turn streamed as server-sent events, over real HTTP: the demo's agent on the real Acme
//! backend, the events read as a client reads them.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{acme_backend, demo_agent, TestServer};

/// Posts `content` asking for a stream; the response as it arrived.
async fn post_streamed(server: &TestServer, conversation: &str, content: &str) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/v1/conversations/{conversation}/messages")))
        .header("accept", "text/event-stream")
        .json(&json!({ "content": content }))
        .send()
        .await
        .expect("send")
}

/// The (event, data) pairs of a whole event stream, keep-alive comments left out.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_owned());
                } else if let Some(part) = line.strip_prefix("data:") {
                    data.push_str(part.trim_start());
                }
            }
            Some((event?, serde_json::from_str(&data).expect("every data line is JSON")))
        })
        .collect()
}

#[tokio::test]
async fn a_lookup_streams_its_tool_status_before_the_tokens_and_ends_with_done() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let response = post_streamed(&server, &id, "Where is my order A-10032?").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let events = events(&response.text().await.expect("the stream ends"));
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();

    let position = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("{kind} in {kinds:?}"));
    assert!(position("meta") < position("tool_started"), "{kinds:?}");
    assert!(position("tool_started") < position("tool_finished"));
    assert!(position("tool_finished") < position("token"));
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");

    let meta = &events[position("meta")].1;
    assert_eq!(meta["intent"], "order_status");
    assert_eq!(meta["conversation_id"], id.as_str());
    let started = &events[position("tool_started")].1;
    assert_eq!(started["name"], "get_order");
    assert_eq!(started["display"], "Checking your order…");
    assert_eq!(events[position("tool_finished")].1["outcome"], "ok");

    let streamed: String =
        events.iter().filter(|(k, _)| k == "token").map(|(_, d)| d["text"].as_str().unwrap()).collect();
    let transcript = server.transcript(&id).await;
    let messages = transcript["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "the message and its reply are stored");
    assert_eq!(messages[1]["content"].as_str(), Some(streamed.as_str()), "the tokens are the stored reply");
    assert!(streamed.contains("4833351328"));

    let done = &events.last().unwrap().1;
    assert_eq!(done["message_id"], messages[1]["id"]);
    assert_eq!(done["user_message_id"], messages[0]["id"]);
    assert_eq!(done["answered_by"], "tool");
    let (ttft, latency) = (done["ttft_ms"].as_f64().unwrap(), done["latency_ms"].as_f64().unwrap());
    assert!(ttft > 0.0 && ttft <= latency, "{done}");
}

#[tokio::test]
async fn an_answer_from_the_help_centre_streams_its_citations() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let body = post_streamed(&server, &id, "How do I reset my password?").await.text().await.unwrap();
    let events = events(&body);
    let cited: Vec<&str> =
        events.iter().filter(|(k, _)| k == "citation").filter_map(|(_, d)| d["article_id"].as_str()).collect();
    assert!(cited.contains(&"password-reset"), "{events:?}");
    assert!(events.iter().filter(|(k, _)| k == "token").count() >= 2, "sentence by sentence: {events:?}");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_event_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let id = server.create_conversation().await;
    let response = post_streamed(&server, &id, "   ").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "message_empty", "{body}");
    let unknown = "01900000-0000-7000-8000-000000000000";
    let response = post_streamed(&server, unknown, "hello").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(server.transcript(&id).await["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_still_gets_its_message_and_reply_stored() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let response = post_streamed(&server, &id, "Where is my order A-10032?").await;
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    let mut messages = Vec::new();
    for _ in 0..120 {
        messages = server.transcript(&id).await["messages"].as_array().unwrap().clone();
        if messages.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[1]["content"].as_str().unwrap().contains("4833351328"));
}
