//! The HTTP API, spoken to over real HTTP: a real server on a random port, a fresh SQLite
//! store per test, and the Acme knowledge base.

mod support;

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{acme_backend, demo_agent, demo_agent_refused, demo_config, TestServer};

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
    assert_eq!(reply["metadata"]["answered_by"], "tool");
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
    assert_eq!(reply["content"], concierge_server::answer::OUT_OF_SCOPE_REPLY);
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
    let response = server.client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["store"], json!({ "up": true, "backend": "sqlite" }), "{body}");
    assert_eq!(body["rate_limits"]["falling_back"], false, "{body}");
    assert_eq!(body["jobs"]["queue_depth"], 0, "{body}");
    assert!(body["models"].is_array(), "{body}");
}

async fn backend_order(backend: &str, id: &str) -> Value {
    reqwest::get(format!("{backend}/orders/{id}")).await.expect("backend").json().await.expect("json")
}

#[tokio::test]
async fn an_order_that_has_not_arrived_is_looked_up_once_its_number_is_given_and_the_number_is_remembered() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;

    let (status, body) = server.say(&id, "My order hasn't arrived").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["answered_by"], "ask", "{body}");
    assert_eq!(meta["asked_for"]["missing"], json!(["order_id"]), "{body}");
    assert!(body["reply"]["content"].as_str().unwrap().contains("order number"), "{body}");

    let (_, body) = server.say(&id, "It's A-10032").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["tool"]["name"], "get_order", "{body}");
    assert_eq!(meta["tool"]["arguments"], json!({ "order_id": "A-10032" }));
    assert_eq!(meta["routing"]["decision"], "continued");
    let text = body["reply"]["content"].as_str().unwrap();
    assert!(text.contains("is shipped") && text.contains("4833351328"), "{text}");

    let (_, body) = server.say(&id, "Thanks. Do you ship to Canada?").await;
    assert_eq!(body["reply"]["role"], "assistant", "{body}");
    let (_, body) = server.say(&id, "What was my order number again?").await;
    let text = body["reply"]["content"].as_str().unwrap();
    assert!(text.contains("A-10032"), "{body}");
}

#[tokio::test]
async fn a_refund_above_the_automatic_limit_waits_for_an_operator_and_is_made_once() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "I want a refund of $150 for order A-10007, the blender stopped working").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["answered_by"], "approval_pending", "{body}");
    assert_eq!(meta["intent"], "refund_request");
    let approval = meta["approval"]["id"].as_str().expect("approval id").to_owned();
    assert_eq!(meta["approval"]["arguments"]["amount_cents"], 15000);
    assert!(backend_order(&backend, "A-10007").await["refund"].is_null(), "nothing is refunded yet");

    let pending: Value = server.client.get(server.url("/v1/approvals")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = pending["approvals"].as_array().unwrap().iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, [approval.as_str()]);

    let decide = |body: Value| {
        let url = server.url(&format!("/v1/approvals/{approval}"));
        let client = server.client.clone();
        async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = decide(json!({ "approve": true, "by": "ops@acme", "reason": "faulty unit" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["approval"]["status"], "approved");
    let text = body["reply"]["content"].as_str().expect("the customer is told");
    assert!(text.contains("refund of 150") && text.contains("A-10007"), "{text}");
    assert_eq!(body["reply"]["metadata"]["tool"]["approved_by"], "ops@acme [env:admin]");
    assert_eq!(backend_order(&backend, "A-10007").await["refund"]["amount_cents"], 15000);

    let (status, body) = decide(json!({ "approve": true, "by": "someone@acme" })).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "conflict"), "{body}");
    assert_eq!(backend_order(&backend, "A-10007").await["refund"]["amount_cents"], 15000, "refunded once");

    let transcript = server.transcript(&id).await;
    let messages = transcript["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "message, the wait, the confirmation");
    assert_eq!(messages[2]["content"], text);

    let store = concierge_store::open(&server.store_url).await.unwrap();
    let audit = store.tool_calls(&"default".parse().unwrap(), id.parse().unwrap()).await.unwrap();
    let refunds: Vec<_> = audit.iter().filter(|c| c.tool == "create_refund").collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].approved_by.as_deref(), Some("ops@acme [env:admin]"));
}

#[tokio::test]
async fn a_refund_in_full_looks_the_order_up_and_asks_for_what_is_left_to_refund() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "Please refund order A-10007 in full, the headphones stopped working").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["answered_by"], "approval_pending", "{body}");
    assert_eq!(meta["approval"]["tool"], "create_refund");
    assert_eq!(meta["approval"]["arguments"]["amount_cents"], 29998, "the order's total: {meta}");
    let store = concierge_store::open(&server.store_url).await.unwrap();
    let audit = store.tool_calls(&"default".parse().unwrap(), id.parse().unwrap()).await.unwrap();
    let tools: Vec<&str> = audit.iter().map(|c| c.tool.as_str()).collect();
    assert_eq!(tools, ["get_order"], "looked up, nothing refunded before the approval");
    assert!(backend_order(&backend, "A-10007").await["refund"].is_null());
}

#[tokio::test]
async fn a_follow_up_too_short_to_find_its_article_alone_is_searched_with_the_message_before_it() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let (_, first) = server.say(&id, "forgot my password how do i reset").await;
    assert_eq!(first["reply"]["metadata"]["retrieval"]["with_previous_message"], false, "{first}");
    let (_, body) = server.say(&id, "the link says its expired").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["retrieval"]["with_previous_message"], true, "{body}");
    let cited: Vec<&str> =
        meta["citations"].as_array().unwrap().iter().filter_map(|c| c["article_id"].as_str()).collect();
    assert!(cited.contains(&"password-reset"), "{body}");
    // A new question after it is searched as it is.
    let (_, body) = server.say(&id, "Do you ship to Canada?").await;
    assert_eq!(body["reply"]["metadata"]["retrieval"]["with_previous_message"], false, "{body}");
}

#[tokio::test]
async fn a_small_refund_is_made_at_once_and_a_denied_one_is_explained() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "Please refund $20 on order A-10021, one item was missing").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["tool"]["name"], "create_refund", "{body}");
    assert_eq!(meta["tool"]["outcome"], "ok", "{body}");
    assert_eq!(backend_order(&backend, "A-10021").await["refund"]["amount_cents"], 2000);

    let other = server.create_conversation().await;
    let (_, body) = server.say(&other, "I'd like a refund of $180 for order A-10013").await;
    let approval = body["reply"]["metadata"]["approval"]["id"].as_str().expect("waits").to_owned();
    let url = server.url(&format!("/v1/approvals/{approval}"));
    let decision = json!({ "approve": false, "by": "ops@acme", "reason": "outside the return window" });
    let body: Value = server.client.post(url).json(&decision).send().await.unwrap().json().await.unwrap();
    let text = body["reply"]["content"].as_str().unwrap();
    assert!(text.contains("could not approve") && text.contains("outside the return window"), "{text}");
    assert!(backend_order(&backend, "A-10013").await["refund"].is_null());
}

#[tokio::test]
async fn asking_for_a_manager_opens_a_ticket_in_the_helpdesk_and_gives_its_number() {
    let backend = acme_backend().await;
    let server = demo_agent(&backend).await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "I want to talk to a manager").await;
    let meta = &body["reply"]["metadata"];
    let ticket = meta["escalation"]["ticket"].as_str().expect("a ticket").to_owned();
    assert!(ticket.starts_with("T-"), "the helpdesk's own number: {body}");
    assert!(meta["escalation"]["reasons"].as_array().unwrap().contains(&json!("asked_for_human")), "{body}");
    assert!(body["reply"]["content"].as_str().unwrap().contains(&ticket));
    let transcript = server.transcript(&id).await;
    assert_eq!(transcript["status"], "escalated");
    let store = concierge_store::open(&server.store_url).await.unwrap();
    let tickets = store.list_tickets(&"default".parse().unwrap(), None, 10).await.unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].external_ref.as_deref(), Some(ticket.as_str()));
    assert!(tickets[0].summary.contains("I want to talk to a manager"));
}

#[tokio::test]
async fn bad_approval_decisions_are_refused_with_codes() {
    let server = TestServer::start().await;
    let (status, body) =
        server.post_raw("/v1/approvals/not-an-id", Some("application/json"), r#"{"approve":true,"by":"x"}"#).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_id"));
    let unknown = format!("/v1/approvals/{}", concierge_core::ApprovalId::new());
    let (status, body) = server.post_raw(&unknown, Some("application/json"), r#"{"approve":true,"by":"ops"}"#).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    // Without `by` the credential alone names the approver: the approval is looked for.
    let (status, body) = server.post_raw(&unknown, Some("application/json"), r#"{"approve":true}"#).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");
    let (status, body) = server.post_raw(&unknown, Some("application/json"), r#"{"approve":true,"by":"  "}"#).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
    let (status, body) = server.post_raw(&unknown, Some("application/json"), r#"{"approve":"yes","by":"ops"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn a_message_stored_by_a_process_that_died_before_answering_is_answered_at_the_next_start() {
    let first = TestServer::start().await;
    let id = first.create_conversation().await;
    // What a process killed mid-turn leaves: the customer's message, stored, and no reply.
    let store = concierge_store::open(&first.store_url).await.unwrap();
    let message = concierge_store::NewMessage {
        id: concierge_core::MessageId::new(),
        conversation_id: id.parse().unwrap(),
        tenant_id: "default".parse().unwrap(),
        role: concierge_core::Role::User,
        content: "How do I reset my password?".into(),
        metadata: json!({}),
    };
    store.append_message(message).await.unwrap();

    let second = first.start_again().await;
    // It is answered in the background, soon after the start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut transcript = second.transcript(&id).await;
    while transcript["messages"].as_array().map_or(0, Vec::len) < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        transcript = second.transcript(&id).await;
    }
    let messages = transcript["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{transcript}");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["metadata"]["recovered"], true);
    assert_eq!(messages[1]["metadata"]["citations"][0]["article_id"], "password-reset");
}

#[tokio::test]
async fn an_action_lookup_that_is_risky_foreign_or_unreadable_stops_the_start() {
    let backend = acme_backend().await;
    let with_lookup = |tool: &'static str, when: Option<&'static str>| {
        move |c: &mut concierge_server::Config| {
            let billing = c.agent.specialists.iter_mut().find(|s| s.actions.contains_key("refund_request")).unwrap();
            let lookup = billing.actions.get_mut("refund_request").unwrap().lookup.as_mut().unwrap();
            lookup.tool = tool.to_owned();
            lookup.when = when.map(str::to_owned);
        }
    };
    // create_refund is high risk: a lookup must never have a side effect.
    let risky = demo_agent_refused(&backend, with_lookup("create_refund", None)).await;
    assert!(risky.contains("actions.refund_request.lookup") && risky.contains("not a low-risk tool"), "{risky}");
    // loyalty_balance is low risk but not among the billing specialist's tools.
    let foreign = demo_agent_refused(&backend, with_lookup("loyalty_balance", None)).await;
    assert!(foreign.contains("`loyalty_balance` is not a low-risk tool among its tools"), "{foreign}");
    let unreadable = demo_agent_refused(&backend, with_lookup("get_order", Some("(in full"))).await;
    assert!(unreadable.contains("actions.refund_request.lookup.when"), "{unreadable}");
}

#[tokio::test]
async fn a_customer_reference_out_of_bounds_is_refused_on_every_way_in() {
    let server = TestServer::start().await;
    for customer_ref in [String::new(), "C".repeat(129)] {
        let body = json!({ "customer_ref": customer_ref }).to_string();
        let (status, error) = server.post_raw("/v1/conversations", Some("application/json"), body).await;
        assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")));
    }
    let body = json!({ "customer_ref": "C".repeat(128) }).to_string();
    let (status, _) = server.post_raw("/v1/conversations", Some("application/json"), body).await;
    assert_eq!(status, StatusCode::CREATED, "128 characters is within bounds");
}
