//! The embedding layer: the local model against an independent reference, what its vectors
//! must mean, batching and caching in front of a model, and the remote provider against a
//! stub server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use concierge_retrieval::{
    BatchingConfig, BatchingEmbedder, EmbedError, Embedder, LocalEmbedder, LocalEmbedderConfig, RemoteEmbedder,
    RemoteEmbedderConfig,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};

// ---------------------------------------------------------------- helpers

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// One model for the whole test binary: loading it is the slow part.
fn minilm() -> Arc<LocalEmbedder> {
    static MODEL: OnceLock<Arc<LocalEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let config = LocalEmbedderConfig { threads: 2, ..LocalEmbedderConfig::all_minilm_l6_v2(models_dir()) };
            Arc::new(LocalEmbedder::load(config).expect("the model is in models/: run scripts/fetch-models"))
        })
        .clone()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// 64 distinct questions of the kind customers ask.
fn support_sentences() -> Vec<String> {
    const QUESTIONS: [&str; 16] = [
        "How do I reset my password?",
        "Where is my parcel?",
        "I was charged twice for my last order.",
        "Can I change the delivery address after ordering?",
        "My kettle stopped heating and the light blinks red.",
        "How long does a refund take to reach my card?",
        "I want to cancel my subscription.",
        "The app keeps logging me out every few minutes.",
        "Do you ship to Norway and how much does it cost?",
        "The item arrived damaged, what should I do?",
        "How can I update the payment method on my account?",
        "Is there a warranty on the coffee grinder?",
        "I never received the confirmation email.",
        "Can I return an item I bought on sale?",
        "How do I pair the smart hub with my phone?",
        "My discount code is not accepted at checkout.",
    ];
    const OPENINGS: [&str; 4] = ["", "Hi, ", "Hello there. ", "Quick question: "];
    OPENINGS.iter().flat_map(|opening| QUESTIONS.iter().map(move |q| format!("{opening}{q}"))).collect()
}

/// Test double: a model whose vector for a text is `[text length, 1, 0, …]`, counting its
/// calls and the texts it saw, and, when gated, holding each call until the test releases
/// one.
struct FakeEmbedder {
    calls: AtomicUsize,
    texts: AtomicUsize,
    gated: bool,
    entered: Notify,
    release: Semaphore,
}

impl FakeEmbedder {
    fn new() -> Arc<Self> {
        Arc::new(Self::build(false))
    }

    fn gated() -> Arc<Self> {
        Arc::new(Self::build(true))
    }

    fn build(gated: bool) -> Self {
        Self {
            calls: AtomicUsize::new(0),
            texts: AtomicUsize::new(0),
            gated,
            entered: Notify::new(),
            release: Semaphore::new(0),
        }
    }

    fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0.0; 4];
        v[0] = text.len() as f32;
        v[1] = 1.0;
        v
    }
}

#[async_trait::async_trait]
impl Embedder for FakeEmbedder {
    fn id(&self) -> &str {
        "fake/length"
    }

    fn dimension(&self) -> usize {
        4
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        if self.gated {
            self.entered.notify_one();
            self.release.acquire().await.expect("the gate is never closed").forget();
        }
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(5), "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------- the local model

#[derive(Deserialize)]
struct Reference {
    sentence: String,
    token_ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[tokio::test]
async fn the_local_model_matches_the_float64_reference() {
    // Written by tests/fixtures/minilm_reference.py: numpy, float64, weights read by hand.
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).expect("the fixture is valid JSON");
    let model = minilm();
    assert_eq!(model.token_ids(&reference.sentence).unwrap(), reference.token_ids);
    let vectors = model.embed(&[reference.sentence.as_str()]).await.unwrap();
    assert_eq!(vectors[0].len(), 384);
    let difference = max_abs_difference(&vectors[0], &reference.embedding);
    assert!(difference < 1e-4, "largest difference from the reference: {difference}");
}

#[tokio::test]
async fn a_password_question_is_closer_to_a_forgotten_password_than_to_a_parcel() {
    let v =
        minilm().embed(&["How do I reset my password?", "I forgot my password", "Where is my parcel?"]).await.unwrap();
    let (password, parcel) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
    assert!(password > parcel + 0.2, "password {password}, parcel {parcel}");
}

#[tokio::test]
async fn a_batch_gives_the_same_vectors_as_one_by_one() {
    let texts = [
        "Where is my parcel?",
        "I was charged twice for the same order and would like the duplicate payment refunded, please.",
        "",
        "How do I reset my password?",
    ];
    let model = minilm();
    let batch = model.embed(&texts).await.unwrap();
    for (text, batched) in texts.iter().zip(&batch) {
        let alone = model.embed(&[text]).await.unwrap();
        let difference = max_abs_difference(&alone[0], batched);
        assert!(difference < 1e-5, "{text:?}: batched differs from alone by {difference}");
    }
}

#[tokio::test]
async fn no_texts_give_no_vectors() {
    assert!(minilm().embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_empty_string_and_a_text_beyond_the_token_limit_both_embed() {
    let model = minilm();
    let long = "my order arrived late and the box was damaged ".repeat(40);
    assert_eq!(model.max_tokens(), 256);
    assert_eq!(model.token_ids(&long).unwrap().len(), 256, "truncated at the model's max_seq_length");
    for vector in model.embed(&["", &long]).await.unwrap() {
        assert_eq!(vector.len(), model.dimension());
        assert!((norm(&vector) - 1.0).abs() < 1e-5);
    }
}

#[test]
fn a_missing_model_folder_names_the_path_and_the_fetch_script() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-model");
    let config = LocalEmbedderConfig { model_dir: dir.clone(), name: "none".into(), threads: 1 };
    let error = LocalEmbedder::load(config).unwrap_err();
    assert!(matches!(&error, EmbedError::ModelMissing { path } if *path == dir), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&dir.display().to_string()) && message.contains("scripts/fetch-models"), "{message}");
}

// ---------------------------------------------------------------- batching and cache

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_callers_get_their_own_vectors_from_few_model_calls() {
    let model = minilm();
    let sentences = support_sentences();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let expected = model.embed(&refs).await.unwrap();

    let config = BatchingConfig { max_batch: 32, max_wait: Duration::from_millis(5), ..BatchingConfig::default() };
    let batcher = Arc::new(BatchingEmbedder::start(model, config).unwrap());
    let callers: Vec<_> = sentences
        .iter()
        .cloned()
        .map(|sentence| {
            let batcher = Arc::clone(&batcher);
            tokio::spawn(async move { batcher.embed_one(&sentence).await })
        })
        .collect();
    for (caller, expected) in callers.into_iter().zip(&expected) {
        let vector = caller.await.unwrap().unwrap();
        assert!(max_abs_difference(&vector, expected) < 1e-5);
    }
    let stats = batcher.stats();
    assert_eq!(stats.model_texts, 64);
    assert!(stats.model_calls <= 8, "64 callers took {} model calls", stats.model_calls);
}

#[tokio::test]
async fn a_full_queue_is_refused_not_blocked() {
    let model = FakeEmbedder::gated();
    let config = BatchingConfig { max_batch: 1, max_wait: Duration::ZERO, queue_capacity: 2, cache_capacity: 0 };
    let batcher = Arc::new(BatchingEmbedder::start(model.clone(), config).unwrap());
    let call = |text: &'static str| {
        let batcher = Arc::clone(&batcher);
        tokio::spawn(async move { batcher.embed_one(text).await })
    };

    let running = call("running");
    model.entered.notified().await;
    let waiting = [call("first waiting"), call("second waiting")];
    wait_until("two texts are queued", || batcher.stats().queued == 2).await;

    let refused = tokio::time::timeout(Duration::from_secs(1), batcher.embed_one("one too many")).await;
    assert!(matches!(refused, Ok(Err(EmbedError::Overloaded { capacity: 2 }))), "{refused:?}");
    assert_eq!(batcher.stats().refused, 1);

    model.release.add_permits(3);
    assert_eq!(running.await.unwrap().unwrap(), FakeEmbedder::vector("running"));
    for caller in waiting {
        assert!(caller.await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn a_call_larger_than_the_whole_queue_is_refused_and_nothing_of_it_queued() {
    let config = BatchingConfig { queue_capacity: 2, ..BatchingConfig::default() };
    let model = FakeEmbedder::new();
    let batcher = BatchingEmbedder::start(model.clone(), config).unwrap();
    let error = batcher.embed(&["a", "b", "c"]).await.unwrap_err();
    assert!(matches!(error, EmbedError::TooManyTexts { texts: 3, capacity: 2 }), "{error:?}");
    assert_eq!(model.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_repeated_text_is_served_from_the_cache() {
    let model = FakeEmbedder::new();
    let batcher = BatchingEmbedder::start(model.clone(), BatchingConfig::default()).unwrap();
    let first = batcher.embed_one("Where is my parcel?").await.unwrap();
    let again = batcher.embed_one("Where is my parcel?").await.unwrap();
    assert_eq!(first, again);
    assert_eq!(model.calls.load(Ordering::SeqCst), 1, "the model is not called for a cached text");
    let stats = batcher.stats().cache;
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_text_asked_by_many_callers_at_once_is_embedded_once() {
    let model = FakeEmbedder::new();
    let config = BatchingConfig { max_wait: Duration::from_millis(20), ..BatchingConfig::default() };
    let batcher = Arc::new(BatchingEmbedder::start(model.clone(), config).unwrap());
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let batcher = Arc::clone(&batcher);
            tokio::spawn(async move { batcher.embed_one("I want a refund").await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), FakeEmbedder::vector("I want a refund"));
    }
    assert_eq!(model.texts.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------- the remote provider

const STUB_KEY: &str = "sk-stub-key-0123";

/// Stub of an OpenAI-compatible `/v1/embeddings`. The requested model picks the behaviour;
/// `ok` answers in reverse order with explicit indices and unnormalised vectors
/// `[length, 1, 0, 0]`, so the client must reorder and normalise.
async fn stub_embeddings(headers: HeaderMap, Json(request): Json<Value>) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {STUB_KEY}")) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong API key").into_response();
    }
    let inputs: Vec<String> = serde_json::from_value(request["input"].clone()).unwrap_or_default();
    let items = |dimension: usize| -> Vec<Value> {
        inputs
            .iter()
            .enumerate()
            .rev()
            .map(|(index, text)| {
                let mut v = vec![0.0f32; dimension];
                v[0] = text.len() as f32;
                v[1] = 1.0;
                json!({ "object": "embedding", "index": index, "embedding": v })
            })
            .collect()
    };
    match request["model"].as_str().unwrap_or_default() {
        "ok" => Json(json!({ "object": "list", "data": items(4), "model": "ok" })).into_response(),
        "wrong-dimension" => Json(json!({ "object": "list", "data": items(3) })).into_response(),
        "malformed" => (StatusCode::OK, "{\"data\": [{\"embedding\": ").into_response(),
        "overloaded" => (StatusCode::SERVICE_UNAVAILABLE, "upstream overloaded").into_response(),
        "rate-limited" => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(json!({ "data": items(4) })).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "{\"error\": {\"message\": \"model not found\"}}").into_response(),
    }
}

/// Starts the stub on a random port and returns its API root.
async fn start_stub() -> String {
    let app = Router::new().route("/v1/embeddings", post(stub_embeddings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/v1")
}

fn remote(base_url: &str, model: &str) -> RemoteEmbedder {
    remote_with_deadline(base_url, model, Duration::from_secs(5))
}

fn remote_with_deadline(base_url: &str, model: &str, deadline: Duration) -> RemoteEmbedder {
    RemoteEmbedder::new(RemoteEmbedderConfig {
        base_url: base_url.to_owned(),
        model: model.to_owned(),
        api_key: Some(STUB_KEY.to_owned().into()),
        dimension: 4,
        deadline,
    })
    .unwrap()
}

#[tokio::test]
async fn the_remote_provider_returns_normalised_vectors_in_input_order() {
    let base = start_stub().await;
    let embedder = remote(&base, "ok");
    assert_eq!(embedder.id(), "openai/ok");
    let vectors = embedder.embed(&["abc", "", "abcdefg"]).await.unwrap();
    for (vector, length) in vectors.iter().zip([3.0f32, 0.0, 7.0]) {
        let scale = (length * length + 1.0).sqrt();
        assert!(max_abs_difference(vector, &[length / scale, 1.0 / scale, 0.0, 0.0]) < 1e-6, "{vector:?}");
    }
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn remote_failures_are_sorted_by_kind() {
    let base = start_stub().await;
    let error = |model: &'static str| {
        let embedder = remote(&base, model);
        async move { embedder.embed(&["hello"]).await.unwrap_err() }
    };
    assert!(matches!(error("unknown-model").await, EmbedError::Rejected { status: 404, .. }));
    assert!(matches!(error("overloaded").await, EmbedError::Server { status: 503, .. }));
    assert!(matches!(error("rate-limited").await, EmbedError::RateLimited { .. }));
    assert!(matches!(error("malformed").await, EmbedError::Malformed { .. }));
    assert!(matches!(error("wrong-dimension").await, EmbedError::WrongDimension { expected: 4, actual: 3, .. }));
    let slow = remote_with_deadline(&base, "slow", Duration::from_millis(200));
    let error = slow.embed(&["hello"]).await.unwrap_err();
    assert!(matches!(error, EmbedError::Timeout { after, .. } if after == Duration::from_millis(200)), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_remote_provider_is_a_connection_error() {
    // Bind a port, then free it: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error = remote(&format!("http://{address}/v1"), "ok").embed(&["hello"]).await.unwrap_err();
    assert!(matches!(error, EmbedError::Connect { .. }), "{error:?}");
}

#[tokio::test]
async fn a_wrong_api_key_is_a_rejection_and_no_key_is_ever_printed() {
    let base = start_stub().await;
    let embedder = RemoteEmbedder::new(RemoteEmbedderConfig {
        base_url: base,
        model: "ok".into(),
        api_key: Some("sk-wrong-key-9876".to_owned().into()),
        dimension: 4,
        deadline: Duration::from_secs(2),
    })
    .unwrap();
    let error = embedder.embed(&["hello"]).await.unwrap_err();
    assert!(matches!(error, EmbedError::Rejected { status: 401, .. }), "{error:?}");
    let printed = format!("{embedder:?} {error}");
    assert!(!printed.contains("sk-wrong-key-9876"), "{printed}");
}

// ---------------------------------------------------------------- throughput

/// Not a check: prints sentences per second for a batch of 64 support questions on two
/// threads. Quote the figure of an optimised build,
/// `cargo test --release -p concierge-retrieval --test embed -- --ignored --nocapture`:
/// the dev profile keeps debug assertions in the dependencies and runs about a third slower.
#[tokio::test]
#[ignore = "measures throughput; run on an idle machine"]
async fn throughput_of_a_batch_of_64_on_two_threads() {
    let model = minilm();
    let sentences = support_sentences();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    model.embed(&refs).await.unwrap();
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        model.embed(&refs).await.unwrap();
    }
    let per_second = (rounds * refs.len()) as f64 / started.elapsed().as_secs_f64();
    println!("{}: {per_second:.0} sentences/s (batch of {}, 2 threads)", model.id(), refs.len());
}
