//! Knowledge-base answers phrased by a model, over real HTTP: the real server with the
//! `openai` provider pointed at a stand-in OpenAI-compatible server run by the test.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use concierge_core::TenantId;
use concierge_llm::Price;
use concierge_server::config::{OpenAiProviderConfig, ProviderConfig};
use concierge_server::Config;
use serde_json::{json, Value};
use support::TestServer;

const ANSWER: &str = "Use \"Forgot password?\" on the sign-in page; the link in the email works for one hour [1].";
const INVENTED: &str = "A password reset costs $25 and the new password arrives by post within 3 days [1].";
const MODEL: &str = "stub-model-1";
const MODEL_ID: &str = "openai/stub-model-1";

/// How the stand-in upstream answers every request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// A streamed answer citing [1], with usage: 1000 prompt and 500 completion tokens.
    Answer,
    /// A streamed answer citing [1] whose figures no passage holds.
    Invent,
    /// HTTP 500.
    Fail,
}

/// Test double: an OpenAI-compatible chat completions server that answers every request
/// the same way, counts the requests and keeps the last body.
struct StubUpstream {
    behaviour: Behaviour,
    calls: AtomicUsize,
    last_body: Mutex<Option<Value>>,
}

impl StubUpstream {
    /// Serves on a random port; returns the stub and its `/v1` base URL.
    async fn start(behaviour: Behaviour) -> (Arc<Self>, String) {
        let stub = Arc::new(Self { behaviour, calls: AtomicUsize::new(0), last_body: Mutex::new(None) });
        let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(Arc::clone(&stub));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (stub, format!("http://{addr}/v1"))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last_body(&self) -> Value {
        self.last_body.lock().unwrap().clone().expect("a request arrived")
    }
}

async fn completions(State(stub): State<Arc<StubUpstream>>, Json(body): Json<Value>) -> Response {
    stub.calls.fetch_add(1, Ordering::SeqCst);
    *stub.last_body.lock().unwrap() = Some(body);
    match stub.behaviour {
        Behaviour::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
        Behaviour::Answer | Behaviour::Invent => {
            let answer = if matches!(stub.behaviour, Behaviour::Answer) { ANSWER } else { INVENTED };
            let (first, rest) = answer.split_at(20);
            let chunks = [
                json!({ "choices": [{ "index": 0, "delta": { "role": "assistant", "content": first } }] }),
                json!({ "choices": [{ "index": 0, "delta": { "content": rest } }] }),
                json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] }),
                json!({ "choices": [], "usage": { "prompt_tokens": 1000, "completion_tokens": 500 } }),
            ];
            let mut sse: String = chunks.iter().map(|chunk| format!("data: {chunk}\n\n")).collect();
            sse.push_str("data: [DONE]\n\n");
            ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
        }
    }
}

/// `name` as an OpenAI-compatible provider at `base_url` serving `model`.
fn add_provider(config: &mut Config, name: &str, base_url: &str, model: &str) {
    let provider = OpenAiProviderConfig {
        base_url: base_url.to_owned(),
        model: model.to_owned(),
        api_key_env: None,
        api_key: None,
    };
    config.llm.providers.insert(name.to_owned(), ProviderConfig::Openai(provider));
}

/// The server answering with `name` first, GPT-4o-mini's prices for the stub model.
fn use_provider(config: &mut Config, name: &str) {
    config.llm.provider = name.to_owned();
    config.llm.prices.0.insert(MODEL_ID.into(), Price { input_per_million: 0.15, output_per_million: 0.6 });
}

/// The server answering with one stand-in upstream that behaves as `behaviour`.
async fn served_by(behaviour: Behaviour) -> (Arc<StubUpstream>, TestServer) {
    let (stub, url) = StubUpstream::start(behaviour).await;
    let server = TestServer::start_with(|c| {
        add_provider(c, "openai", &url, MODEL);
        use_provider(c, "openai");
    })
    .await;
    (stub, server)
}

async fn usage_summary(server: &TestServer) -> concierge_core::UsageSummary {
    let store = concierge_store::open(&server.store_url).await.expect("store");
    let tenant = TenantId::try_from("default".to_owned()).expect("tenant");
    store.usage_summary(&tenant, chrono::DateTime::UNIX_EPOCH).await.expect("summary")
}

#[tokio::test]
async fn a_knowledge_question_is_answered_by_the_model_from_numbered_passages_and_its_cost_recorded() {
    let (stub, server) = served_by(Behaviour::Answer).await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "How do I reset my password?").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let reply = &body["reply"];
    let metadata = &reply["metadata"];
    // The gate cites the passage that supports the sentence, whatever number the model
    // wrote; the passages are numbered in prompt order, the most relevant last.
    let passages = metadata["retrieval"]["passages"].as_u64().expect("passage count");
    let cited = metadata["citations"][0]["n"].as_u64().expect("a citation");
    assert!((1..=passages).contains(&cited), "{metadata}");
    assert_eq!(reply["content"], ANSWER.replace("[1]", &format!("[{cited}]")));
    assert_eq!(metadata["answered_by"], "knowledge_base_llm");
    assert_eq!(metadata["model"], MODEL_ID);
    assert_eq!(metadata["usage"], json!({ "prompt_tokens": 1000, "completion_tokens": 500 }));
    assert_eq!(metadata["cost_micros"], 450, "1000 × 0.15 + 500 × 0.6 micro-dollars");
    assert_eq!(metadata["grounded"], true);
    assert_eq!(metadata["grounding"]["passed"], true);
    assert_eq!(metadata["grounding"]["supported"], 1);
    assert_eq!(metadata["citations"][0]["article_id"], "password-reset");
    assert!(metadata["latency_ms"].as_f64().is_some());
    assert!(metadata.get("llm_error").is_none() && metadata.get("route").is_none());

    let sent = stub.last_body();
    assert_eq!(sent["model"], MODEL);
    assert_eq!(sent["temperature"], 0.0);
    assert_eq!(sent["max_tokens"], 512);
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["role"], "system");
    assert!(messages[0]["content"].as_str().unwrap().contains("[n]"));
    let question = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(question.contains("[1] ") && question.ends_with("Question: How do I reset my password?"), "{question}");

    let summary = usage_summary(&server).await;
    assert_eq!((summary.calls, summary.prompt_tokens, summary.completion_tokens), (1, 1000, 500));
    assert_eq!(summary.cost_micros, 450);
    let transcript = server.transcript(&id).await;
    assert_eq!(transcript["messages"][1]["metadata"]["model"], MODEL_ID, "the metadata is stored");
}

#[tokio::test]
async fn an_answer_no_passage_supports_is_never_sent_and_the_passage_is_quoted_instead() {
    let (stub, server) = served_by(Behaviour::Invent).await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "How do I reset my password?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = &body["reply"];
    let content = reply["content"].as_str().unwrap();
    assert!(!content.contains("$25") && !content.contains("post"), "{content}");
    assert!(content.contains("[1]"), "the quoted passage is cited: {content}");
    let metadata = &reply["metadata"];
    assert_eq!(metadata["answered_by"], "knowledge_base_quote");
    assert_eq!(metadata["citations"][0]["article_id"], "password-reset");
    assert_eq!(metadata["grounding"]["passed"], false);
    assert_eq!(metadata["grounding"]["rejected"][0]["reason"], "figure", "{metadata}");
    assert_eq!(metadata["grounding"]["rejected"][0]["figure"], "25");
    assert_eq!(metadata["model"], MODEL_ID);
    assert_eq!(stub.calls(), 1);
    assert_eq!(usage_summary(&server).await.calls, 1, "the call was made and is billed");
}

#[tokio::test]
async fn earlier_turns_are_given_to_the_model() {
    let (stub, server) = served_by(Behaviour::Answer).await;
    let id = server.create_conversation().await;
    let (_, first) = server.say(&id, "How do I reset my password?").await;
    server.say(&id, "And if the reset email never arrives?").await;
    let messages = stub.last_body()["messages"].as_array().expect("messages").clone();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(messages[1]["content"], "How do I reset my password?");
    assert_eq!(messages[2]["content"], first["reply"]["content"]);
    assert!(messages[2]["content"].as_str().unwrap().starts_with("Use \"Forgot password?\""));
}

#[tokio::test]
async fn a_failing_model_still_gets_a_quoted_answer_with_the_error_recorded() {
    let (stub, server) = served_by(Behaviour::Fail).await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "How do I reset my password?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metadata = &body["reply"]["metadata"];
    assert_eq!(metadata["answered_by"], "knowledge_base_quote");
    assert_eq!(metadata["llm_error"], "server");
    assert_eq!(metadata["citations"][0]["article_id"], "password-reset");
    assert!(body["reply"]["content"].as_str().unwrap().contains("[1]"));
    assert_eq!(stub.calls(), 3, "the default retry policy tried three times");
    assert_eq!(usage_summary(&server).await.calls, 0, "a failed call is not billed");
}

#[tokio::test]
async fn a_fallback_answers_when_the_primary_fails_and_is_the_model_recorded() {
    let (_broken, broken_url) = StubUpstream::start(Behaviour::Fail).await;
    let (_stub, url) = StubUpstream::start(Behaviour::Answer).await;
    let server = TestServer::start_with(|c| {
        add_provider(c, "primary", &broken_url, "broken-model");
        add_provider(c, "backup", &url, MODEL);
        use_provider(c, "primary");
        c.llm.fallbacks = vec!["backup".into()];
    })
    .await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "How do I reset my password?").await;
    let metadata = &body["reply"]["metadata"];
    assert_eq!(metadata["answered_by"], "knowledge_base_llm", "{body}");
    assert_eq!(metadata["model"], MODEL_ID);
    assert_eq!(metadata["cost_micros"], 450);
}

#[tokio::test]
async fn a_repeated_question_is_answered_from_the_cache_without_new_cost() {
    let (stub, server) = served_by(Behaviour::Answer).await;
    for _ in 0..2 {
        let id = server.create_conversation().await;
        server.say(&id, "How do I reset my password?").await;
    }
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "How do I reset my password?").await;
    let metadata = &body["reply"]["metadata"];
    assert_eq!(metadata["cached"], true);
    assert_eq!(metadata["cost_micros"], 0);
    assert_eq!(metadata["model"], MODEL_ID);
    assert_eq!(stub.calls(), 1);
    assert_eq!(usage_summary(&server).await.calls, 1);
}

#[tokio::test]
async fn routing_sends_long_prompts_to_the_large_model_and_records_the_route() {
    let (_small, small_url) = StubUpstream::start(Behaviour::Answer).await;
    let (large, large_url) = StubUpstream::start(Behaviour::Answer).await;
    let server = TestServer::start_with(|c| {
        add_provider(c, "small", &small_url, "small-model");
        add_provider(c, "large", &large_url, "large-model");
        use_provider(c, "small");
        let rules = concierge_llm::routing::RoutingRules { max_small_prompt_chars: 1, ..Default::default() };
        c.llm.routing = Some(concierge_server::config::RoutingConfig { small: None, large: "large".into(), rules });
    })
    .await;
    let id = server.create_conversation().await;
    let (_, body) = server.say(&id, "How do I reset my password?").await;
    let metadata = &body["reply"]["metadata"];
    assert_eq!(metadata["model"], "openai/large-model", "{body}");
    assert_eq!(metadata["route"]["size"], "large");
    assert_eq!(metadata["route"]["reason"]["rule"], "long_prompt");
    assert_eq!(large.calls(), 1);
}

#[tokio::test]
async fn nothing_found_is_said_without_calling_the_model() {
    let (stub, server) = served_by(Behaviour::Answer).await;
    let id = server.create_conversation().await;
    let (status, body) = server.say(&id, "qwxz zzyzx").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reply"]["metadata"]["answered_by"], "knowledge_base_quote");
    assert_eq!(body["reply"]["metadata"]["grounded"], false);
    assert_eq!(stub.calls(), 0);
}

#[cfg(feature = "local")]
#[tokio::test]
async fn a_missing_local_model_file_stops_start_up_and_says_how_to_fetch_it() {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().expect("addr");
    let dir = tempfile::tempdir().expect("temp dir");
    config.store.url = format!("sqlite://{}", dir.path().join("m.db").display());
    let local = concierge_llm::local::LocalModelConfig { path: dir.path().join("absent.gguf"), ..Default::default() };
    config.llm.providers.insert("local".into(), ProviderConfig::Local(local));
    let err = concierge_server::Server::build(&config).await.err().expect("start-up fails").to_string();
    assert!(err.contains("llm.providers.local") && err.contains("scripts/fetch-models"), "{err}");
}
