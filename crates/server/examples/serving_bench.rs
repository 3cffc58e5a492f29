//! The serving benchmark's two halves (see bench/serving/run):
//!
//! - `serve`: Concierge as the benchmark runs it: the real server on a SQLite store of its
//!   own, no knowledge base and no model (the streams are what is measured, not answers).
//! - `load`: the client, the same for Concierge and its peer: opens conversations, holds one
//!   follow stream (`GET /v1/conversations/{id}/events`) per conversation, posts messages at
//!   a fixed rate, and measures each event's delay from the moment its message was stored
//!   (its `created_at`) to its arrival; the server's RSS is read from /proc.
//!
//!   cargo run --release -p concierge-server --no-default-features --example serving_bench -- serve --port 8300 --dir /tmp/x
//!   cargo run --release -p concierge-server --no-default-features --example serving_bench -- load --url http://127.0.0.1:8300 --pid PID --streams 10000

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

use support::{arg, number, percentile};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args).await,
        Some("load") => load(&args).await,
        _ => {
            eprintln!("usage: serving_bench serve --port P --dir D | load --url U --pid PID [--streams N] [--posts M] [--rate R]");
            std::process::exit(2);
        }
    }
}

async fn serve(args: &[String]) {
    let port = number(args, "--port", 8300) as u16;
    let dir = PathBuf::from(arg(args, "--dir").expect("--dir"));
    std::fs::create_dir_all(&dir).expect("the store's folder");
    let mut config = concierge_server::Config::default();
    config.server.bind = ([127, 0, 0, 1], port).into();
    config.store.url = format!("sqlite://{}", dir.join("bench.db").display());
    config.knowledge.data_dir = Some(dir.join("vectors"));
    config.knowledge.path = None;
    config.llm.provider = "none".into();
    config.log.level = "warn".into();
    config.secrets.admin_key = Some(support::BENCH_KEY.to_owned().into());
    // The load comes from one address at thousands of requests a second, as no client would.
    config.rate_limits.enabled = false;
    let server = concierge_server::Server::build(&config).await.expect("the server starts");
    println!("listening on {}", server.local_addr().expect("bound"));
    server.serve(std::future::pending()).await.expect("serve");
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn load(args: &[String]) {
    let url = arg(args, "--url").expect("--url");
    let pid: u32 = arg(args, "--pid").expect("--pid").parse().expect("--pid takes a number");
    let streams = number(args, "--streams", 10_000) as usize;
    let posts = number(args, "--posts", 2_000) as usize;
    let rate = number(args, "--rate", 100);
    let hold = Duration::from_secs(number(args, "--hold", 10));
    let name = arg(args, "--name").unwrap_or_else(|| "server".into());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .default_headers(support::auth_headers())
        .build()
        .expect("client");
    let rss_idle = rss_mib(pid);

    // Conversations, 64 at a time.
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..streams)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client.post(format!("{url}/v1/conversations")).json(&json!({})).send().await.ok()?;
                let body: Value = response.json().await.ok()?;
                body["id"].as_str().map(str::to_owned)
            }
        })
        .buffer_unordered(64)
        .filter_map(|id| async move { id })
        .collect()
        .await;
    eprintln!("{name}: {} conversations in {:.1} s", ids.len(), started.elapsed().as_secs_f64());
    let rss_conversations = rss_mib(pid);

    // One follow stream per conversation, each on its own connection.
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let stream_errors = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut holders = Vec::with_capacity(ids.len());
    // One client: with every connection busy holding a stream, it opens a new one per request.
    let streamer = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .default_headers(support::auth_headers())
        .build()
        .expect("client");
    for id in &ids {
        let (streamer, url, id) = (streamer.clone(), url.clone(), id.clone());
        let (latencies, received, errors, opened) =
            (Arc::clone(&latencies), Arc::clone(&received), Arc::clone(&stream_errors), Arc::clone(&opened));
        holders.push(tokio::spawn(async move {
            let response = match streamer.get(format!("{url}/v1/conversations/{id}/events")).send().await {
                Ok(r) if r.status().is_success() => r,
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let now = Utc::now();
                // Servers may end lines with CRLF (sse-starlette does); read both alike.
                buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
                    let Ok(event) = serde_json::from_str::<Value>(data.trim()) else { continue };
                    let Some(at) = event["created_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()) else {
                        continue;
                    };
                    let ms = (now - at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                    latencies.lock().unwrap().push(ms);
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        // Opening 10,000 connections at once would be a connection storm, not a held load.
        if holders.len() % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    while (opened.load(Ordering::Relaxed) + stream_errors.load(Ordering::Relaxed)) < ids.len() as u64 {
        if started.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_secs = started.elapsed().as_secs_f64();
    let rss_held = rss_mib(pid);
    eprintln!("{name}: {} streams open in {open_secs:.1} s, RSS {rss_held:.0} MiB", opened.load(Ordering::Relaxed));

    // Messages at a fixed rate to random conversations; each makes events on its stream.
    let post_errors = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut posting = Vec::with_capacity(posts);
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let started = Instant::now();
    for _ in 0..posts {
        ticker.tick().await;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = ids[(seed % ids.len() as u64) as usize].clone();
        let (client, url, errors) = (client.clone(), url.clone(), Arc::clone(&post_errors));
        posting.push(tokio::spawn(async move {
            let sent = client
                .post(format!("{url}/v1/conversations/{id}/messages"))
                .json(&json!({ "content": "Is my parcel on its way?" }))
                .send()
                .await;
            if !sent.is_ok_and(|r| r.status().is_success()) {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for post in posting {
        let _ = post.await;
    }
    let post_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let rss_after = rss_mib(pid);
    let mut sorted = latencies.lock().unwrap().clone();
    sorted.sort_by(f64::total_cmp);
    for holder in &holders {
        holder.abort();
    }
    let result = json!({
        "name": name,
        "streams_requested": streams,
        "streams_open": opened.load(Ordering::Relaxed),
        "stream_errors": stream_errors.load(Ordering::Relaxed),
        "open_secs": open_secs,
        "posts": posts,
        "post_rate": rate,
        "post_secs": post_secs,
        "post_errors": post_errors.load(Ordering::Relaxed),
        "events_expected": posts * 2,
        "events_received": received.load(Ordering::Relaxed),
        "event_delay_ms": { "p50": percentile(&sorted, 0.5), "p99": percentile(&sorted, 0.99), "max": sorted.last() },
        "rss_mib": { "idle": rss_idle, "conversations_made": rss_conversations, "streams_held": rss_held, "after_posts": rss_after },
    });
    println!("{result}");
}
