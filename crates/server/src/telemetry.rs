//! `GET /metrics`: the process's figures in Prometheus's text format, for an operator's
//! Prometheus to scrape (with an operator key) and `deploy/` to chart and alert on.
//!
//! Every crate records through the `metrics` facade under the names of
//! `concierge_core::metric`; this module installs the recorder that keeps them (once per
//! process: several servers in one test process share it), records what the server itself
//! sees (requests, turns, usage, ratings, redactions), and at each scrape reads the figures
//! that live elsewhere (breakers, the response cache, the job queue, the rate limiter).
//! Histograms of durations share one set of buckets, in seconds.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use concierge_core::metric;
use concierge_guard::KindSet;
use concierge_llm::resilience::BreakerState;
use concierge_llm::ChatModel;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::gateway::Gateway;
use crate::jobs::JobService;
use crate::llm::LlmStack;
use crate::ratelimit::RateLimits;

/// From a millisecond to a minute: requests, stages and whole turns on a CPU model.
const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// The process's recorder, installed on first use.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder was installed first; /metrics will show only what it does not take"
            );
        }
        handle
    })
}

/// Installs the recorder, so that what is recorded from now on is kept.
pub fn install() {
    handle();
}

/// What a scrape reads besides what was recorded.
pub struct Sources {
    pub llm: Option<Arc<LlmStack>>,
    pub gateway: Arc<Gateway>,
    pub jobs: Arc<JobService>,
    pub limits: Arc<RateLimits>,
}

impl Sources {
    /// Every provider in use, the agent's and the gateway's, once each (they share
    /// breakers), with where its breaker stands.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        let agent = self.llm.iter().flat_map(|llm| llm.breaker_states());
        let gateway = self.gateway.models().map(|(_, model)| (model.id().to_owned(), model.breaker().state()));
        let states: BTreeMap<String, BreakerState> = agent.chain(gateway).collect();
        states.into_iter().collect()
    }
}

/// The text of a scrape.
pub fn render(sources: &Sources) -> String {
    for (provider, state) in sources.breaker_states() {
        let value = match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        gauge!(metric::LLM_BREAKER_STATE, "provider" => provider).set(value);
    }
    if let Some(llm) = &sources.llm {
        if let Some(cache) = llm.cache_stats() {
            counter!(metric::LLM_CACHE_LOOKUPS, "result" => "hit").absolute(cache.hits);
            counter!(metric::LLM_CACHE_LOOKUPS, "result" => "miss").absolute(cache.misses);
        }
    }
    gauge!(metric::JOBS_QUEUE_DEPTH).set(sources.jobs.queue_depth() as f64);
    gauge!(metric::RATE_LIMIT_FALLBACK).set(if sources.limits.falling_back() { 1.0 } else { 0.0 });
    counter!(metric::RATE_LIMITED).absolute(sources.limits.status().limited);
    handle().render()
}

/// Middleware on every matched route: counts the request by its declared route, method
/// and status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    // `/v1/conversations/:id/messages`: braces in label values trip up some parsers.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().replace('{', ":").replace('}', ""))
        .unwrap_or_default();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!(metric::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    histogram!(metric::HTTP_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// A turn's reply: its outcome, who answered, the intent, and how long it took.
pub fn turn(outcome: &'static str, answered_by: &str, intent: &str, seconds: f64) {
    let labels =
        [("outcome", outcome.to_owned()), ("answered_by", answered_by.to_owned()), ("intent", intent.to_owned())];
    counter!(metric::TURNS, &labels).increment(1);
    histogram!(metric::TURN_SECONDS, "outcome" => outcome).record(seconds);
}

pub fn first_token(seconds: f64) {
    histogram!(metric::TTFT_SECONDS).record(seconds);
}

pub fn stage(stage: &'static str, seconds: f64) {
    histogram!(metric::STAGE_SECONDS, "stage" => stage).record(seconds);
}

/// A model call's tokens and cost.
pub fn usage(model: &str, tenant: &str, prompt_tokens: u64, completion_tokens: u64, cost_micros: i64) {
    let labels =
        |kind: &'static str| [("model", model.to_owned()), ("tenant", tenant.to_owned()), ("kind", kind.to_owned())];
    counter!(metric::LLM_TOKENS, &labels("prompt")).increment(prompt_tokens);
    counter!(metric::LLM_TOKENS, &labels("completion")).increment(completion_tokens);
    let labels = [("model", model.to_owned()), ("tenant", tenant.to_owned())];
    counter!(metric::LLM_COST_MICROS, &labels).increment(u64::try_from(cost_micros).unwrap_or(0));
}

pub fn feedback(rating: i16) {
    counter!(metric::FEEDBACK, "rating" => if rating > 0 { "up" } else { "down" }).increment(1);
}

/// Personal data of `kinds` replaced at `place`.
pub fn redacted(place: &'static str, kinds: KindSet) {
    for kind in kinds.iter() {
        counter!(metric::PII_REDACTED, "kind" => kind.name(), "place" => place).increment(1);
    }
}

pub fn injection(channel: &'static str, action: &'static str, count: u64) {
    counter!(metric::INJECTIONS, "channel" => channel, "action" => action).increment(count);
}

pub fn output_blocked(reason: &'static str) {
    counter!(metric::OUTPUT_BLOCKED, "reason" => reason).increment(1);
}
