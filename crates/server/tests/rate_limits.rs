//! Rate limits over HTTP: a key's bucket, the address's bucket checked before the
//! credential, 429 `rate_limited` with `Retry-After`, and (when `REDIS_URL` is set) one limit
//! enforced by two processes sharing Redis.

mod support;

use concierge_server::config::{Quota, TierLimits};
use concierge_server::Config;
use reqwest::StatusCode;
use serde_json::Value;
use support::{client_with, TestServer, WIDGET_KEY};

/// A tenant of its own for each test: Redis keeps buckets across runs.
fn fresh_tenant() -> String {
    format!("rl-{}", uuid::Uuid::new_v4().simple())
}

/// Limits small enough to reach in a test.
fn tight(config: &mut Config, tenant: &str, key: u32, ip: u32) {
    config.rate_limits.enabled = true;
    let tier = TierLimits {
        key: Quota { per_minute: 1, burst: key },
        user: Quota::unlimited(),
        ip: Quota { per_minute: 1, burst: ip },
    };
    config.rate_limits.tiers.insert("test".into(), tier);
    config.tenant.tier = "test".into();
    config.tenant.id = tenant.to_owned().try_into().expect("a tenant id");
}

async fn answer(response: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_burst_gets_429_with_retry_after_and_other_keys_go_on() {
    let tenant = fresh_tenant();
    let server = TestServer::start_with(|config| tight(config, &tenant, 3, 1_000)).await;
    let (status, _, stats) = answer(server.client.get(server.url("/v1/stats")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["rate_limits"]["backend"], "memory", "{stats}");
    for _ in 0..2 {
        let response = server.client.get(server.url("/v1/stats")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (status, retry, body) = answer(server.client.get(server.url("/v1/stats")).send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // The widget key has its own bucket; health is never limited.
    let widget = client_with(WIDGET_KEY);
    let response = widget.post(server.url("/v1/conversations")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    for _ in 0..5 {
        assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_keys_from_one_address_is_limited_before_they_are_checked() {
    let tenant = fresh_tenant();
    let server = TestServer::start_with(|config| tight(config, &tenant, 1_000, 4)).await;
    let guesser = client_with("a-guessed-key-that-is-long-enough");
    for _ in 0..4 {
        let (status, _, body) = answer(guesser.get(server.url("/v1/stats")).send().await.unwrap()).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    }
    let (status, retry, body) = answer(guesser.get(server.url("/v1/stats")).send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{body}");
    assert!(retry.is_some());
    // The address's bucket is empty for every credential now, the admin's too.
    let (status, _, _) = answer(server.client.get(server.url("/v1/stats")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_redis_enforce_one_limit() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("SKIPPED redis rate-limit test: REDIS_URL not set (limits are then kept per process)");
        return;
    };
    let tenant = fresh_tenant();
    let shared = |config: &mut Config| {
        tight(config, &tenant, 4, 1_000);
        config.secrets.redis_url = Some(url.clone().into());
    };
    let first = TestServer::start_with(shared).await;
    let second = first.start_again_with(shared).await;
    let stats = |server: &TestServer| server.client.get(server.url("/v1/stats")).send();
    let (status, _, body) = answer(stats(&first).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rate_limits"]["backend"], "redis", "{body}");
    // Four tokens between the two processes: one taken above, three more, then none for either.
    for server in [&second, &first, &second] {
        assert_eq!(stats(server).await.unwrap().status(), StatusCode::OK);
    }
    for server in [&first, &second] {
        let (status, retry, body) = answer(stats(server).await.unwrap()).await;
        assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{body}");
        assert!(retry.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_does_not_answer_leaves_the_process_ready_and_says_it_is_degraded() {
    let tenant = fresh_tenant();
    let server = TestServer::start_with(|config| {
        tight(config, &tenant, 1_000, 1_000);
        // Nothing listens on port 1.
        config.secrets.redis_url = Some("redis://127.0.0.1:1".to_owned().into());
    })
    .await;
    let (status, _, _) = answer(server.client.get(server.url("/v1/stats")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "limits are kept in memory meanwhile");
    let (status, _, ready) = answer(reqwest::get(server.url("/readyz")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["rate_limits"]["falling_back"], true, "{ready}");
    assert_eq!(ready["rate_limits"]["backend"], "memory (redis unavailable)", "{ready}");
    assert_eq!(ready["store"]["up"], true, "{ready}");
}
