//! Personal data through the real server configured as the demo is: card numbers never
//! reach the store (messages, checkpoints, audit, feedback), the kinds `[privacy] stored`
//! names are replaced before anything is kept, and the agent answers what was kept.

mod support;

use concierge_guard::{KindSet, PiiKind};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{acme_backend, demo_agent, demo_agent_with, TestServer};

const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "123-45-6789";
const EMAIL: &str = "ana.lopez@example.com";

/// Everything the server's SQLite store holds on disk, the write-ahead log included.
fn stored_bytes(server: &TestServer) -> String {
    let path = server.store_url.strip_prefix("sqlite://").expect("a SQLite store");
    let mut bytes = Vec::new();
    for file in [path.to_owned(), format!("{path}-wal")] {
        if let Ok(content) = std::fs::read(&file) {
            bytes.extend(content);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn post(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let response = server.client.post(server.url(path)).json(&body).send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn card_numbers_and_ssns_are_replaced_before_anything_is_stored() {
    let server = demo_agent(&acme_backend().await).await;
    let id = server.create_conversation().await;
    let said = format!("Order A-10024 was charged twice on my card {CARD}. SSN {SSN}, write to {EMAIL}");
    let (status, exchange) = server.say(&id, &said).await;
    assert_eq!(status, StatusCode::OK, "{exchange}");
    let kept = exchange["message"]["content"].as_str().expect("the stored message");
    assert_eq!(kept, format!("Order A-10024 was charged twice on my card [CARD]. SSN [SSN], write to {EMAIL}"));
    assert_eq!(exchange["message"]["metadata"]["redacted"], json!(["card", "ssn"]));
    assert!(exchange["reply"]["content"].as_str().is_some_and(|c| !c.trim().is_empty()), "{exchange}");

    let reply = exchange["reply"]["id"].as_str().expect("reply id");
    let comment = format!("You still have my card {} on file?", CARD.replace(' ', ""));
    let (status, rated) =
        post(&server, "/v1/feedback", json!({ "message_id": reply, "rating": -1, "comment": comment })).await;
    assert_eq!(status, StatusCode::CREATED, "{rated}");
    assert_eq!(rated["feedback"]["comment"], "You still have my card [CARD] on file?");

    let transcript = server.transcript(&id).await.to_string();
    assert!(!transcript.contains("4111") && !transcript.contains(SSN), "{transcript}");
    // Not in any table: messages, checkpoints of the turn, the audit log, feedback.
    let stored = stored_bytes(&server);
    assert!(stored.contains("[CARD]"), "the store holds the redacted message");
    for secret in [CARD, &CARD.replace(' ', ""), SSN] {
        assert!(!stored.contains(secret), "the store holds {secret}");
    }
}

#[tokio::test]
async fn the_kinds_a_tenant_names_are_replaced_too_and_none_is_for_none() {
    let backend = acme_backend().await;
    let server = demo_agent_with(&backend, |c| {
        c.privacy.stored = [PiiKind::Email, PiiKind::Phone].into_iter().collect();
    })
    .await;
    let id = server.create_conversation().await;
    let (status, exchange) = server.say(&id, &format!("Please call +1 (415) 555-0134 or mail {EMAIL}")).await;
    assert_eq!(status, StatusCode::OK, "{exchange}");
    assert_eq!(exchange["message"]["content"], "Please call [PHONE] or mail [EMAIL]");
    assert_eq!(exchange["message"]["metadata"]["redacted"], json!(["email", "phone"]));

    // With nothing listed, only card numbers go.
    let server = demo_agent_with(&backend, |c| c.privacy.stored = KindSet::NONE).await;
    let id = server.create_conversation().await;
    let (_, exchange) = server.say(&id, &format!("SSN {SSN}, card {CARD}")).await;
    assert_eq!(exchange["message"]["content"], format!("SSN {SSN}, card [CARD]"));
}
