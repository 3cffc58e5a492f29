//! What a strong model decides when configured to, through the real server: the demo's
//! agent on the real Acme backend, its model an OpenAI-compatible provider pointed at a
//! scripted stand-in that answers each request with the next step of a script. Native
//! function calling: the model chooses the tools; the system checks, executes, audits and
//! grounds. Routing by the model (`router.llm`): it names the intent, the classifier's
//! reading is kept and stands when the model's answer is no intent.

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use concierge_agent::LlmRouting;
use concierge_core::{ConversationId, TenantId};
use concierge_server::config::{OpenAiProviderConfig, ProviderConfig};
use serde_json::{json, Value};
use support::{acme_backend, demo_agent_with, TestServer};

/// One answer of the stand-in model.
enum Step {
    /// Calls `name` with the arguments made from the request it answers.
    Call {
        name: &'static str,
        arguments: Box<dyn Fn(&Value) -> Value + Send + Sync>,
    },
    Text(&'static str),
    /// HTTP 500.
    Fail,
}

fn call(name: &'static str, arguments: Value) -> Step {
    Step::Call { name, arguments: Box::new(move |_| arguments.clone()) }
}

/// Test double: an OpenAI-compatible chat completions server that plays `script`, one
/// step per request (HTTP 500 once it runs out), and keeps every request body.
struct ScriptedModel {
    script: Mutex<std::collections::VecDeque<Step>>,
    requests: Mutex<Vec<Value>>,
}

impl ScriptedModel {
    async fn start(script: Vec<Step>) -> (Arc<Self>, String) {
        let model = Arc::new(Self { script: Mutex::new(script.into()), requests: Mutex::new(Vec::new()) });
        let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(Arc::clone(&model));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (model, format!("http://{addr}/v1"))
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn completions(State(model): State<Arc<ScriptedModel>>, Json(body): Json<Value>) -> Response {
    model.requests.lock().unwrap().push(body.clone());
    let step = model.script.lock().unwrap().pop_front().unwrap_or(Step::Fail);
    let chunks = match step {
        Step::Fail => return (StatusCode::INTERNAL_SERVER_ERROR, "no more steps").into_response(),
        Step::Text(text) => vec![
            json!({ "choices": [{ "index": 0, "delta": { "role": "assistant", "content": text } }] }),
            json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] }),
        ],
        Step::Call { name, arguments } => {
            // The arguments arrive in two pieces, as real providers split them.
            let arguments = arguments(&body).to_string();
            let (first, rest) = arguments.split_at(arguments.len() / 2);
            let n = model.requests.lock().unwrap().len();
            vec![
                json!({ "choices": [{ "index": 0, "delta": { "role": "assistant", "tool_calls": [
                    { "index": 0, "id": format!("call_{n}"), "type": "function", "function": { "name": name, "arguments": first } }
                ] } }] }),
                json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [
                    { "index": 0, "function": { "arguments": rest } }
                ] } }] }),
                json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "tool_calls" }] }),
            ]
        }
    };
    let mut sse: String = chunks.iter().map(|chunk| format!("data: {chunk}\n\n")).collect();
    sse.push_str(&format!(
        "data: {}\n\n",
        json!({ "choices": [], "usage": { "prompt_tokens": 700, "completion_tokens": 40 } })
    ));
    sse.push_str("data: [DONE]\n\n");
    ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
}

/// The demo's agent on a fresh Acme backend, its model the scripted one (an OpenAI
/// provider, so `function_calling = "auto"` makes it native).
async fn native_agent(script: Vec<Step>) -> (Arc<ScriptedModel>, TestServer, String) {
    agent_with(script, LlmRouting::Off).await
}

/// [`native_agent`], routing by the model as `routing` says.
async fn agent_with(script: Vec<Step>, routing: LlmRouting) -> (Arc<ScriptedModel>, TestServer, String) {
    let backend = acme_backend().await;
    let (model, url) = ScriptedModel::start(script).await;
    let server = demo_agent_with(&backend, |c| {
        let provider =
            OpenAiProviderConfig { base_url: url, model: "scripted-1".into(), api_key_env: None, api_key: None };
        c.llm.providers.insert("remote".into(), ProviderConfig::Openai(provider));
        c.llm.provider = "remote".into();
        c.router.llm = routing;
    })
    .await;
    (model, server, backend)
}

/// The audit log's calls of `conversation`, oldest first: (tool, arguments).
async fn audited(server: &TestServer, conversation: &str) -> Vec<(String, Value)> {
    let store = concierge_store::open(&server.store_url).await.expect("store");
    let tenant = TenantId::try_from("default".to_owned()).expect("tenant");
    let id: ConversationId = conversation.parse().expect("conversation id");
    let mut calls = store.tool_calls(&tenant, id).await.expect("audit");
    calls.sort_by_key(|c| c.created_at);
    calls.into_iter().map(|c| (c.tool, c.arguments)).collect()
}

/// The tool messages a request carried back to the model, as text.
fn tool_results(request: &Value) -> Vec<String> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    messages.iter().filter(|m| m["role"] == "tool").map(|m| m["content"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn the_model_chooses_the_lookup_and_phrases_its_result_which_the_gate_lets_through() {
    let (model, server, _) = native_agent(vec![
        call("get_order", json!({ "order_id": "A-10032" })),
        Step::Text("Your order A-10032 has shipped with DHL. The tracking number is 4833351328."),
    ])
    .await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "Where is my order A-10032?").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let reply = &body["reply"];
    assert_eq!(reply["content"], "Your order A-10032 has shipped with DHL. The tracking number is 4833351328.");
    let meta = &reply["metadata"];
    assert_eq!(meta["answered_by"], "tool_model", "{meta}");
    assert_eq!(meta["grounding"]["passed"], true);
    assert_eq!(meta["tool"]["name"], "get_order");
    let native = &meta["function_calling"];
    assert_eq!(native["mode"], "native");
    assert_eq!(native["model"], "openai/scripted-1");
    assert_eq!(native["model_calls"], 2);
    assert_eq!(
        native["tool_calls"],
        json!([{ "name": "get_order", "arguments": { "order_id": "A-10032" }, "outcome": "ok" }])
    );
    assert_eq!(native["usage"]["prompt_tokens"], 1400);

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    // Only the specialist's own tools are offered, without the approver's parameter.
    let offered: Vec<&str> =
        requests[0]["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(offered, ["get_order", "cancel_order"], "{}", requests[0]["tools"]);
    // The backend's answer went back verbatim.
    let results = tool_results(&requests[1]);
    assert_eq!(results.len(), 1);
    let result: Value = serde_json::from_str(&results[0]).expect("the result is the backend's JSON");
    assert_eq!(result["shipping"]["tracking_number"], "4833351328");
    assert_eq!(audited(&server, &id).await, vec![("get_order".to_owned(), json!({ "order_id": "A-10032" }))]);
}

#[tokio::test]
async fn an_order_number_the_customer_never_gave_is_asked_for_not_looked_up() {
    let (model, server, _) = native_agent(vec![call("get_order", json!({ "order_id": "A-10001" }))]).await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "My order hasn't arrived yet").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["answered_by"], "ask", "{body}");
    assert_eq!(meta["asked_for"]["missing"], json!(["order_id"]));
    assert!(body["reply"]["content"].as_str().unwrap().contains("order number"), "{body}");
    assert!(audited(&server, &id).await.is_empty(), "nothing was called");
    // One tool-choosing request; the rest (if any) are the help centre's answer being phrased.
    let choosing = model.requests().iter().filter(|r| r["tools"].as_array().is_some_and(|t| !t.is_empty())).count();
    assert_eq!(choosing, 1);
}

#[tokio::test]
async fn an_answer_the_results_do_not_support_is_replaced_by_the_tools_template() {
    let (_, server, _) = native_agent(vec![
        call("get_order", json!({ "order_id": "A-10032" })),
        Step::Text("Order A-10032 was delivered yesterday, and you will get a $20 credit for the wait."),
    ])
    .await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "Where is order A-10032?").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["answered_by"], "tool", "{body}");
    assert_eq!(meta["grounding"]["passed"], false);
    assert!(!meta["grounding"]["rejected"].as_array().unwrap().is_empty());
    let text = body["reply"]["content"].as_str().unwrap();
    assert!(text.contains("is shipped") && text.contains("4833351328") && !text.contains("$20"), "{text}");
}

#[tokio::test]
async fn a_full_refund_takes_the_amount_from_the_order_and_still_waits_for_an_operator() {
    let (model, server, backend) = native_agent(vec![
        call("get_order", json!({ "order_id": "A-10007" })),
        Step::Call {
            name: "create_refund",
            arguments: Box::new(|request| {
                let results = tool_results(request);
                let order: Value = serde_json::from_str(results.last().expect("the order")).expect("json");
                json!({ "order_id": "A-10007", "amount_cents": order["total_cents"], "reason": "headphones faulty", "approved_by": "the model" })
            }),
        },
        Step::Text("Your refund of 299.98 USD for order A-10007 has been issued."),
    ])
    .await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "Please refund order A-10007 in full, the headphones are faulty").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["answered_by"], "approval_pending", "{body}");
    assert_eq!(meta["approval"]["arguments"]["amount_cents"], 29998, "{meta}");
    assert!(meta["approval"]["arguments"].get("approved_by").is_none(), "a model never names the approver");
    let approval = meta["approval"]["id"].as_str().unwrap().to_owned();

    let url = server.url(&format!("/v1/approvals/{approval}"));
    let decision = json!({ "approve": true, "by": "ops@acme", "reason": "faulty pair" });
    let response = server.client.post(url).json(&decision).send().await.expect("send");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let reply = &body["reply"];
    assert!(reply["content"].as_str().unwrap().contains("299.98"), "{body}");
    assert_eq!(reply["metadata"]["tool"]["approved_by"], "ops@acme [env:admin]", "{body}");

    let order: Value = reqwest::get(format!("{backend}/orders/A-10007")).await.unwrap().json().await.unwrap();
    assert_eq!(order["refund"]["amount_cents"], 29998, "refunded once, in full: {order}");
    let calls: Vec<String> = audited(&server, &id).await.into_iter().map(|(tool, _)| tool).collect();
    assert_eq!(calls, ["get_order", "create_refund"]);
    assert_eq!(model.requests().len(), 3);
}

#[tokio::test]
async fn when_the_model_fails_the_arguments_are_extracted_instead() {
    let (model, server, _) = native_agent(vec![Step::Fail]).await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "Where is my order A-10032?").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["tool"]["name"], "get_order", "{body}");
    assert!(meta.get("function_calling").is_none(), "{meta}");
    assert!(body["reply"]["content"].as_str().unwrap().contains("4833351328"));
    assert!(!model.requests().is_empty());
}

/// The agent routing every message by the model, which answers `routing` and then looks up
/// A-10032 and reports it.
async fn routed_lookup(routing: &'static str) -> (Arc<ScriptedModel>, TestServer, String) {
    let script = vec![
        Step::Text(routing),
        call("get_order", json!({ "order_id": "A-10032" })),
        Step::Text("Order A-10032 has shipped with DHL, tracking number 4833351328."),
    ];
    agent_with(script, LlmRouting::Always).await
}

#[tokio::test]
async fn a_routing_model_names_the_intent_and_the_classifiers_reading_is_kept() {
    let (model, server, _) = routed_lookup(r#"{"intent": "order_status"}"#).await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "A-10032: any news?").await;
    let meta = &body["reply"]["metadata"];
    assert_eq!(meta["routing"]["decision"], "llm", "{meta}");
    assert_eq!(meta["routing"]["routing"]["intent"]["intent"], "order_status");
    assert!(meta["routing"]["classifier"]["decision"].is_string(), "the classifier's reading is kept: {meta}");
    assert_eq!(meta["intent"], "order_status");
    assert_eq!(meta["answered_by"], "tool_model", "{meta}");
    let requests = model.requests();
    assert_eq!(requests[0]["response_format"]["type"], "json_object", "routing asks for JSON: {}", requests[0]);
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("- order_status:") && system.contains("- out_of_scope:"), "{system}");
}

#[tokio::test]
async fn a_routing_answer_naming_no_declared_intent_leaves_the_classifiers_decision() {
    let (_, server, _) = routed_lookup(r#"{"intent": "world_domination"}"#).await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "Where is my order A-10032?").await;
    let meta = &body["reply"]["metadata"];
    assert_ne!(meta["routing"]["decision"], "llm", "{meta}");
    assert_eq!(meta["intent"], "order_status", "{meta}");
}
