//! The gateway benchmark's three parts (see bench/gateway/run):
//!
//! - `stub`: an instant OpenAI-compatible upstream: `POST /v1/chat/completions` answers a
//!   fixed completion at once, as JSON or as server-sent chunks when `stream` is true.
//! - `serve`: Concierge with one gateway model, `upstream`, on that stub (no knowledge base,
//!   no agent model: only the gateway path is measured).
//! - `load`: an open-loop client. Requests are sent on a fixed schedule (`--rate` per
//!   second for `--secs`), each timed from the moment it was due to the last byte of its
//!   answer, so a server that falls behind is charged for the wait it causes.
//!
//!   cargo run --release -p concierge-server --no-default-features --example gateway_bench -- stub --port 8400
//!   cargo run --release -p concierge-server --no-default-features --example gateway_bench -- serve --port 8401 --upstream http://127.0.0.1:8400/v1 --dir /tmp/x
//!   cargo run --release -p concierge-server --no-default-features --example gateway_bench -- load --url http://127.0.0.1:8401/v1 --model upstream --rate 2500 --secs 20

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

use support::{arg, number, percentile};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Each part gets the threads it is told to use, so that the three processes sharing the
    // machine are sized on purpose rather than by default.
    let threads = number(&args, "--threads", 2) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("stub") => stub(&args).await,
            Some("serve") => serve(&args).await,
            Some("load") => load(&args).await,
            _ => {
                eprintln!("usage: gateway_bench stub --port P | serve --port P --upstream URL --dir D | load --url U --model M --rate R --secs S [--stream]");
                std::process::exit(2);
            }
        }
    });
}

const STUB_TEXT: &str = "Your order A-10032 left our warehouse yesterday and should arrive on Friday.";

async fn stub(args: &[String]) {
    let port = number(args, "--port", 8400) as u16;
    let completion = json!({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": STUB_TEXT }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 24, "completion_tokens": 18, "total_tokens": 42 },
    })
    .to_string();
    let chunk = |delta: Value, finish: Value| {
        json!({ "id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": "stub",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
    };
    let mut stream = String::new();
    for data in [
        chunk(json!({ "role": "assistant", "content": "" }), Value::Null),
        chunk(json!({ "content": "Your order A-10032 left our warehouse yesterday" }), Value::Null),
        chunk(json!({ "content": " and should arrive on Friday." }), Value::Null),
        chunk(json!({}), json!("stop")),
        json!({ "id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": "stub", "choices": [],
            "usage": { "prompt_tokens": 24, "completion_tokens": 18, "total_tokens": 42 } }),
    ] {
        stream.push_str(&format!("data: {data}\n\n"));
    }
    stream.push_str("data: [DONE]\n\n");
    let (completion, stream): (&'static str, &'static str) = (completion.leak(), stream.leak());
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::body::Bytes| async move {
            let streamed = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["stream"] == true);
            let (kind, text) = if streamed { ("text/event-stream", stream) } else { ("application/json", completion) };
            Response::builder().header(header::CONTENT_TYPE, kind).body(Body::from(text)).unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("stub listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

async fn serve(args: &[String]) {
    let port = number(args, "--port", 8401) as u16;
    let upstream = arg(args, "--upstream").expect("--upstream");
    let dir = PathBuf::from(arg(args, "--dir").expect("--dir"));
    std::fs::create_dir_all(&dir).expect("the store's folder");
    let config = format!(
        r#"
        [server]
        bind = "127.0.0.1:{port}"
        [store]
        url = "sqlite://{store}"
        [knowledge]
        data_dir = "{vectors}"
        [log]
        level = "warn"
        [llm]
        provider = "none"
        gateway = ["upstream"]
        [llm.providers.upstream]
        kind = "openai"
        base_url = "{upstream}"
        model = "stub"
        "#,
        store = dir.join("bench.db").display(),
        vectors = dir.join("vectors").display(),
    );
    let file = dir.join("concierge.toml");
    std::fs::write(&file, config).expect("the config file");
    let mut config = concierge_server::Config::load(Some(&file)).expect("the config");
    config.secrets.admin_key = Some(support::BENCH_KEY.to_owned().into());
    // The load comes from one address at thousands of requests a second, as no client would.
    config.rate_limits.enabled = false;
    let server = concierge_server::Server::build(&config).await.expect("the server starts");
    println!("listening on {}", server.local_addr().expect("bound"));
    server.serve(std::future::pending()).await.expect("serve");
}

async fn load(args: &[String]) {
    let url = arg(args, "--url").expect("--url");
    let model = arg(args, "--model").expect("--model");
    let rate = number(args, "--rate", 500);
    let secs = number(args, "--secs", 20);
    let warmup = number(args, "--warmup", 3);
    let stream = args.iter().any(|a| a == "--stream");
    // Beyond this many requests in flight the server is not keeping up; later ones count
    // as errors instead of piling up in the client.
    let max_in_flight = number(args, "--max-in-flight", 2000);
    let name = arg(args, "--name").unwrap_or_else(|| "target".into());
    let client = reqwest::Client::builder()
        .default_headers(support::auth_headers())
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut body = json!({
        "model": model,
        "messages": [
            { "role": "system", "content": "You are Acme's support assistant. Answer briefly." },
            { "role": "user", "content": "Where is my order A-10032?" },
        ],
        "max_tokens": 64,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
    }
    let body = axum::body::Bytes::from(body.to_string());
    let endpoint = format!("{url}/chat/completions");

    // Warm-up at the same rate: connections opened, caches filled, nothing recorded.
    let run = |total: u64, record: bool| {
        let (client, endpoint, body) = (client.clone(), endpoint.clone(), body.clone());
        async move {
            let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
            let errors = Arc::new(AtomicU64::new(0));
            let shed = Arc::new(AtomicU64::new(0));
            let in_flight = Arc::new(AtomicU64::new(0));
            let period = Duration::from_secs_f64(1.0 / rate as f64);
            let start = Instant::now() + Duration::from_millis(10);
            let mut tasks = Vec::with_capacity(total as usize);
            for i in 0..total {
                let due = start + period * i as u32;
                tokio::time::sleep_until(due.into()).await;
                if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                    shed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (client, endpoint, body) = (client.clone(), endpoint.clone(), body.clone());
                let (latencies, errors, in_flight) =
                    (Arc::clone(&latencies), Arc::clone(&errors), Arc::clone(&in_flight));
                tasks.push(tokio::spawn(async move {
                    let answered = async {
                        let response = client
                            .post(&endpoint)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(body)
                            .send()
                            .await
                            .ok()?;
                        if !response.status().is_success() {
                            return None;
                        }
                        let text = response.bytes().await.ok()?;
                        // A whole answer: the completion's text, or a stream through [DONE].
                        let whole = if stream {
                            memchr_done(&text)
                        } else {
                            serde_json::from_slice::<Value>(&text)
                                .is_ok_and(|v| v["choices"][0]["message"]["content"].is_string())
                        };
                        whole.then_some(())
                    }
                    .await;
                    let ms = due.elapsed().as_secs_f64() * 1000.0;
                    match answered {
                        Some(()) => latencies.lock().unwrap().push(ms),
                        None => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            let wall = start.elapsed().as_secs_f64();
            let mut sorted = std::mem::take(&mut *latencies.lock().unwrap());
            sorted.sort_by(f64::total_cmp);
            if !record {
                return Value::Null;
            }
            json!({
                "requests": total,
                "ok": sorted.len(),
                "errors": errors.load(Ordering::Relaxed),
                "shed": shed.load(Ordering::Relaxed),
                "achieved_rps": sorted.len() as f64 / wall,
                "latency_ms": {
                    "p50": percentile(&sorted, 0.5),
                    "p90": percentile(&sorted, 0.9),
                    "p99": percentile(&sorted, 0.99),
                    "p999": percentile(&sorted, 0.999),
                    "max": sorted.last(),
                },
            })
        }
    };
    run(rate * warmup, false).await;
    let mut result = run(rate * secs, true).await;
    result["name"] = json!(name);
    result["rate"] = json!(rate);
    result["secs"] = json!(secs);
    result["stream"] = json!(stream);
    println!("{result}");
}

/// Whether a streamed answer got to its `[DONE]` without an error chunk.
fn memchr_done(text: &[u8]) -> bool {
    let text = String::from_utf8_lossy(text);
    text.contains("data: [DONE]") && !text.contains("\"error\"")
}
