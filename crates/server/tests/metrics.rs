//! `/metrics` through the real server configured as the demo is: after a few turns the text
//! parses as Prometheus's exposition format (by `prometheus-parse`), and holds the requests
//! by route and status, the turns by outcome and intent, every stage's latency, the time to
//! first token, ratings, the queue and the rate limiter; only operators may read it.

mod support;

use prometheus_parse::{Sample, Scrape, Value as Sampled};
use reqwest::StatusCode;
use serde_json::json;
use support::{acme_backend, client_with, demo_agent, WIDGET_KEY};

/// The scrape, parsed; every sample line is first checked against the exposition format's
/// grammar, since the parser skips lines it cannot read.
fn scrape(text: &str) -> Scrape {
    let sample = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|NaN|\+Inf|-Inf)$"#,
    )
    .expect("the grammar");
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        assert!(sample.is_match(line), "not a sample line: {line}");
    }
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("the exposition format parses")
}

/// The samples of `name` whose labels include every pair of `labels`.
fn samples<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// How many observations the histogram `name` holds under `labels`, however the parser
/// groups its `_bucket`, `_sum` and `_count` lines.
fn observed(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let counts = samples(scrape, &format!("{name}_count"), labels).into_iter().map(count);
    let buckets = samples(scrape, name, labels).into_iter().map(count);
    counts.chain(buckets).fold(0.0, f64::max)
}

fn count(sample: &Sample) -> f64 {
    match &sample.value {
        Sampled::Counter(v) | Sampled::Gauge(v) | Sampled::Untyped(v) => *v,
        Sampled::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Sampled::Summary(_) => 0.0,
    }
}

#[tokio::test]
async fn the_figures_of_a_few_turns_are_exported_for_prometheus() {
    let server = demo_agent(&acme_backend().await).await;
    let id = server.create_conversation().await;
    let (status, order) = server.say(&id, "Where is my order A-10024?").await;
    assert_eq!(status, StatusCode::OK, "{order}");
    let (status, _) = server.say(&id, "How do I descale my kettle?").await;
    assert_eq!(status, StatusCode::OK);
    let streamed = server
        .client
        .post(server.url(&format!("/v1/conversations/{id}/messages")))
        .header("accept", "text/event-stream")
        .json(&json!({ "content": "How long does shipping take?" }))
        .send()
        .await
        .expect("send");
    assert!(streamed.text().await.expect("the stream").contains("event: done"));
    let reply = order["reply"]["id"].as_str().expect("reply id");
    let rated = server.client.post(server.url("/v1/feedback")).json(&json!({ "message_id": reply, "rating": -1 }));
    assert_eq!(rated.send().await.expect("send").status(), StatusCode::CREATED);

    let response = server.client.get(server.url("/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.expect("text");
    let scraped = scrape(&text);

    let posted = [("route", "/v1/conversations/:id/messages"), ("method", "POST"), ("status", "200")];
    let requests = samples(&scraped, "concierge_http_requests_total", &posted);
    assert!(requests.iter().map(|s| count(s)).sum::<f64>() >= 3.0, "{text}");
    let turns = samples(&scraped, "concierge_turns_total", &[("outcome", "resolved"), ("intent", "order_status")]);
    assert!(!turns.is_empty(), "{text}");
    for stage in ["router", "retrieval", "tool"] {
        let timed = observed(&scraped, "concierge_stage_duration_seconds", &[("stage", stage)]);
        assert!(timed >= 1.0, "stage {stage}: {text}");
    }
    assert!(observed(&scraped, "concierge_time_to_first_token_seconds", &[]) >= 1.0, "{text}");
    assert!(observed(&scraped, "concierge_turn_duration_seconds", &[("outcome", "resolved")]) >= 2.0, "{text}");
    assert!(samples(&scraped, "concierge_feedback_total", &[("rating", "down")]).iter().any(|s| count(s) >= 1.0));
    assert_eq!(samples(&scraped, "concierge_jobs_queue_depth", &[]).len(), 1, "{text}");
    assert_eq!(samples(&scraped, "concierge_rate_limit_redis_fallback", &[]).first().map(|s| count(s)), Some(0.0));

    // Only operators read it.
    let widget = client_with(WIDGET_KEY).get(server.url("/metrics")).send().await.expect("send");
    assert_eq!(widget.status(), StatusCode::FORBIDDEN);
    let anonymous = reqwest::get(server.url("/metrics")).await.expect("send");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The metric names an expression of `deploy/` uses, histogram suffixes taken off.
fn names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("concierge_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_owned();
        names.push(base);
    }
    names
}

#[test]
fn the_dashboard_and_the_alerts_use_only_exported_metrics() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/concierge.json")).expect("dashboard"))
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 12);
    let mut used = Vec::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            used.extend(names_in(target["expr"].as_str().expect("expr")));
        }
    }
    let alerts = std::fs::read_to_string(deploy.join("prometheus/alerts.yml")).expect("alerts");
    for alert in [
        "ConciergeTurnLatencyHigh",
        "ConciergeErrorRateHigh",
        "ConciergeDailyCostHigh",
        "ConciergeResolutionRateDropped",
        "ConciergeBreakerOpen",
    ] {
        assert!(alerts.contains(&format!("alert: {alert}")), "{alert}");
    }
    used.extend(names_in(&alerts));
    for name in &used {
        assert!(concierge_core::metric::ALL.contains(&name.as_str()), "{name} is not exported");
    }
    for name in concierge_core::metric::ALL {
        assert!(used.iter().any(|u| u == name), "{name} is on no chart and in no alert");
    }
}
