//! Resilience around model calls: retries with backoff, a circuit breaker per provider,
//! and a fallback chain across providers.
//!
//! Every piece is itself a `ChatModel`, so they stack: a `FallbackChain` of
//! `ResilientModel`s, each wrapping one provider.
//!
//! Invariant: a request is only sent again while no event of its answer has been handed
//! out. Once the caller has seen part of an answer, a retry or a fallback would duplicate
//! or contradict it, so later failures are passed through as they are.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::model::{ChatModel, EventStream, LlmError};
use crate::types::{ChatEvent, ChatRequest};

/// The longest wait a provider's `Retry-After` is honoured for. A provider asking for
/// more is effectively down for this request; waiting longer would hold the customer's
/// conversation hostage, so the wait is cut to this and the retry is left to fail fast.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently a failed call is sent again.
///
/// In config, durations are either whole milliseconds (`200`) or text with a unit
/// (`"200ms"`, `"5s"`); missing fields take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Calls in all, the first included; 0 is treated as 1.
    pub max_attempts: u32,
    /// The backoff ceiling after the first failure; it doubles with each further one.
    #[serde(deserialize_with = "config_duration::deserialize")]
    pub base_delay: Duration,
    /// The backoff ceiling never grows past this.
    #[serde(deserialize_with = "config_duration::deserialize")]
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms base delay, 5 s maximum delay.
    fn default() -> Self {
        Self { max_attempts: 3, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// How long to wait after failed attempt number `attempt` (1 for the first call)
    /// ended with `error`, before sending the request again.
    ///
    /// The provider's `Retry-After`, if it gave one, capped at [`MAX_RETRY_AFTER`];
    /// otherwise a uniformly random duration up to [`RetryPolicy::backoff_ceiling`]
    /// ("full jitter"), so that callers who failed together do not retry together.
    /// Cost: one random number, no allocation.
    pub fn delay(&self, attempt: u32, error: &LlmError) -> Duration {
        match error.retry_after() {
            Some(asked) => asked.min(MAX_RETRY_AFTER),
            None => self.backoff_ceiling(attempt).mul_f64(fastrand::f64()),
        }
    }

    /// The largest backoff after failed attempt number `attempt`: `base_delay` doubled
    /// for each attempt after the first, never above `max_delay`. Cost: constant.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        // Past 2^31 every ceiling is above any sane max_delay; capping the exponent keeps
        // the multiplication from overflowing.
        let doublings = attempt.saturating_sub(1).min(31);
        self.base_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }

    /// `max_attempts`, at least 1: a policy cannot forbid the first call.
    fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

/// When a circuit breaker stops calling a provider, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive retryable failures that open the breaker; 0 is treated as 1.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets probes through.
    #[serde(deserialize_with = "config_duration::deserialize")]
    pub open_for: Duration,
    /// Calls let through at once while half-open; 0 is treated as 1.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    /// 5 failures, open for 30 s, 1 probe.
    fn default() -> Self {
        Self { failure_threshold: 5, open_for: Duration::from_secs(30), half_open_probes: 1 }
    }
}

/// Where a circuit breaker stands, as shown to operators (`closed`, `open`, `half_open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are refused until the open period is over.
    Open,
    /// A few probe calls go through; their outcome closes or re-opens the breaker.
    HalfOpen,
}

/// The time source of a circuit breaker; injectable so tests can move time by hand.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probes_in_flight: u32 },
}

/// Stops calling a provider that keeps failing, so that callers fail over at once
/// instead of waiting out its timeouts, and the provider gets room to recover.
///
/// Thread-safe; every method takes one uncontended-in-practice mutex for a few
/// instructions and reads the clock at most once.
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Clock,
    phase: Mutex<Phase>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker").field("config", &self.config).field("phase", &*self.phase()).finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker on the system's monotonic clock.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, Arc::new(Instant::now))
    }

    /// A closed breaker reading time from `clock`.
    pub fn with_clock(config: BreakerConfig, clock: Clock) -> Self {
        Self { config, clock, phase: Mutex::new(Phase::Closed { consecutive_failures: 0 }) }
    }

    /// Where the breaker stands now. An open breaker whose open period is over reports
    /// `HalfOpen`, since the next call would be let through as a probe.
    pub fn state(&self) -> BreakerState {
        match *self.phase() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if (self.clock)() < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go out now. Closed: yes. Open: no, until the open period is
    /// over; then the breaker half-opens. Half-open: yes for up to `half_open_probes`
    /// calls at once. A `true` must be followed by `record_success` or `record_failure`
    /// once the call's outcome is known, or a probe slot stays taken.
    pub fn try_acquire(&self) -> bool {
        let mut phase = self.phase();
        match *phase {
            Phase::Closed { .. } => true,
            Phase::Open { until } => {
                if (self.clock)() < until {
                    return false;
                }
                tracing::info!("circuit breaker half-open: letting a probe through");
                *phase = Phase::HalfOpen { probes_in_flight: 1 };
                true
            }
            Phase::HalfOpen { probes_in_flight } => {
                if probes_in_flight >= self.config.half_open_probes.max(1) {
                    return false;
                }
                *phase = Phase::HalfOpen { probes_in_flight: probes_in_flight + 1 };
                true
            }
        }
    }

    /// A call went well: the breaker closes and the failure count starts over.
    pub fn record_success(&self) {
        let mut phase = self.phase();
        match *phase {
            Phase::HalfOpen { .. } => {
                tracing::info!("circuit breaker closed: probe succeeded");
                *phase = Phase::Closed { consecutive_failures: 0 };
            }
            Phase::Closed { .. } => *phase = Phase::Closed { consecutive_failures: 0 },
            // A call let through before the breaker opened; one late success does not
            // outweigh the failures that opened it.
            Phase::Open { .. } => {}
        }
    }

    /// A call failed in a way that may pass (see `LlmError::is_retryable`); the caller
    /// decides, since a refused request is the caller's fault, not the provider's.
    /// The threshold-th consecutive failure opens the breaker; a failed probe re-opens it.
    pub fn record_failure(&self) {
        let mut phase = self.phase();
        let open = Phase::Open { until: (self.clock)() + self.config.open_for };
        match *phase {
            Phase::Closed { consecutive_failures } => {
                let failures = consecutive_failures + 1;
                if failures >= self.config.failure_threshold.max(1) {
                    tracing::warn!(failures, "circuit breaker open");
                    *phase = open;
                } else {
                    *phase = Phase::Closed { consecutive_failures: failures };
                }
            }
            Phase::HalfOpen { .. } => {
                tracing::warn!("circuit breaker re-opened: probe failed");
                *phase = open;
            }
            Phase::Open { .. } => {}
        }
    }

    /// Records how a call ended: retryable failures count against the provider; any
    /// other outcome, a refused request included, shows the provider is answering.
    fn record(&self, error: Option<&LlmError>) {
        match error {
            Some(error) if error.is_retryable() => self.record_failure(),
            _ => self.record_success(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The phase is a plain value written whole, so a panic elsewhere while the lock
        // was held cannot have left it half-updated.
        self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One provider with retries and a circuit breaker around it.
///
/// Overhead per call: a breaker check, one boxed stream adapter, and waiting for the
/// first event before returning (which the caller would wait for anyway).
pub struct ResilientModel {
    inner: Arc<dyn ChatModel>,
    policy: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
}

impl ResilientModel {
    /// Wraps `inner` with `policy` and a fresh breaker configured by `breaker`.
    pub fn new(inner: Arc<dyn ChatModel>, policy: RetryPolicy, breaker: BreakerConfig) -> Self {
        Self::with_breaker(inner, policy, CircuitBreaker::new(breaker))
    }

    /// Wraps `inner` with `policy` and the given `breaker` (e.g. one on a test clock).
    pub fn with_breaker(inner: Arc<dyn ChatModel>, policy: RetryPolicy, breaker: CircuitBreaker) -> Self {
        Self { inner, policy, breaker: Arc::new(breaker) }
    }

    /// The breaker guarding the provider, e.g. to show its state. Cost: none.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The retry policy in force. Cost: none.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

#[async_trait::async_trait]
impl ChatModel for ResilientModel {
    /// The wrapped provider's id: resilience does not change who answers.
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// Calls the provider once its breaker allows, retrying retryable failures that
    /// come before the first event after waiting `RetryPolicy::delay`. Refused with
    /// `CircuitOpen` while the breaker is open, the inner model not called. Failures
    /// after the first event are passed through, and still counted by the breaker.
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let mut attempt = 1;
        loop {
            if !self.breaker.try_acquire() {
                return Err(LlmError::CircuitOpen { provider: self.id().to_owned() });
            }
            let error = match started(self.inner.as_ref(), request).await {
                Ok(events) => return Ok(Box::pin(BreakerObserved::new(events, Arc::clone(&self.breaker)))),
                Err(error) => error,
            };
            self.breaker.record(Some(&error));
            if !error.is_retryable() || attempt >= self.policy.attempts() {
                return Err(error);
            }
            // This failure may have opened the breaker; waiting out a backoff only to be
            // refused would delay the caller's fallback for nothing.
            if self.breaker.state() == BreakerState::Open {
                return Err(LlmError::CircuitOpen { provider: self.id().to_owned() });
            }
            let wait = self.policy.delay(attempt, &error);
            tracing::warn!(model = self.id(), attempt, ?wait, %error, "model call failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Several models in order of preference; each request goes to the first that answers.
///
/// Overhead per call: one call per model tried, plus waiting for the first event of
/// each, so that a model failing on its first event still hands over to the next.
pub struct FallbackChain {
    models: Vec<Arc<dyn ChatModel>>,
}

impl FallbackChain {
    /// `primary` first, then `fallbacks` in order. A chain always has a first model,
    /// so it always has an id.
    pub fn new(primary: Arc<dyn ChatModel>, fallbacks: impl IntoIterator<Item = Arc<dyn ChatModel>>) -> Self {
        Self { models: std::iter::once(primary).chain(fallbacks).collect() }
    }

    /// The models in the order they are tried. Cost: none.
    pub fn models(&self) -> &[Arc<dyn ChatModel>] {
        &self.models
    }

    /// Starts an answer from the first model that can give one, and says which model it
    /// is (its `id`). Moves on to the next model when one fails before its first event
    /// with a retryable error or `CircuitOpen`; any other error is returned at once, since
    /// another model would refuse the same request. When every model fails, the error is
    /// `Exhausted`, listing each model's failure.
    pub async fn stream_with_route(&self, request: &ChatRequest) -> Result<(String, EventStream), LlmError> {
        let mut failures = Vec::new();
        for model in &self.models {
            match started(model.as_ref(), request).await {
                Ok(events) => return Ok((model.id().to_owned(), events)),
                Err(error) if error.is_retryable() || matches!(error, LlmError::CircuitOpen { .. }) => {
                    tracing::warn!(model = model.id(), %error, "model unavailable; falling back");
                    failures.push(format!("{}: {error}", model.id()));
                }
                Err(error) => return Err(error),
            }
        }
        Err(LlmError::Exhausted(failures.join("; ")))
    }
}

#[async_trait::async_trait]
impl ChatModel for FallbackChain {
    /// The first model's id: the one the chain stands for when all is well.
    fn id(&self) -> &str {
        // Never empty: `new` takes the first model apart from the rest.
        self.models.first().map_or("", |model| model.id())
    }

    /// `stream_with_route` without the route.
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        self.stream_with_route(request).await.map(|(_, events)| events)
    }
}

/// Calls `model` and waits for its first event, so that a failure arriving as the first
/// item counts as a failure to start: nothing has been handed out yet, so it can still be
/// retried or handed to another model. The first event is put back in front of the rest.
async fn started(model: &dyn ChatModel, request: &ChatRequest) -> Result<EventStream, LlmError> {
    let mut events = model.stream(request).await?;
    match events.next().await {
        Some(Err(error)) => Err(error),
        Some(Ok(first)) => {
            Ok(Box::pin(futures::stream::once(async { Ok::<ChatEvent, LlmError>(first) }).chain(events)))
        }
        // An empty answer is the consumer's to judge (`collect` calls it truncated).
        None => Ok(Box::pin(futures::stream::empty())),
    }
}

/// Passes a started answer through and tells the breaker how it ended: a retryable
/// failure mid-answer counts against the provider even though it cannot be retried.
struct BreakerObserved {
    events: EventStream,
    breaker: Arc<CircuitBreaker>,
    settled: bool,
}

impl BreakerObserved {
    fn new(events: EventStream, breaker: Arc<CircuitBreaker>) -> Self {
        Self { events, breaker, settled: false }
    }

    fn settle(&mut self, error: Option<&LlmError>) {
        if !self.settled {
            self.settled = true;
            self.breaker.record(error);
        }
    }
}

impl Stream for BreakerObserved {
    type Item = Result<ChatEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.events.poll_next_unpin(cx);
        match &item {
            Poll::Ready(Some(Err(error))) => self.settle(Some(error)),
            Poll::Ready(None) => self.settle(None),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        item
    }
}

impl Drop for BreakerObserved {
    /// A consumer that stops reading early got events from a working provider; settling
    /// also frees the probe slot a half-open breaker would otherwise wait on forever.
    fn drop(&mut self) {
        self.settle(None);
    }
}

/// Durations in config: whole milliseconds, or text with a unit (`"250ms"`, `"5s"`).
mod config_duration {
    use std::time::Duration;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Millis(millis) => Ok(Duration::from_millis(millis)),
            Raw::Text(text) => parse(&text).ok_or_else(|| {
                D::Error::custom(format!("expected a duration like 200, \"200ms\" or \"5s\", found {text:?}"))
            }),
        }
    }

    fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        if let Some(millis) = text.strip_suffix("ms") {
            millis.trim().parse().ok().map(Duration::from_millis)
        } else if let Some(secs) = text.strip_suffix('s') {
            secs.trim().parse().ok().map(Duration::from_secs)
        } else {
            None
        }
    }
}
