//! Retries, the circuit breaker and the fallback chain, against a scripted model.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use support::{answer, unavailable, ManualClock, Outcome, ScriptedModel};

use concierge_llm::resilience::{
    BreakerConfig, BreakerState, CircuitBreaker, FallbackChain, ResilientModel, RetryPolicy, MAX_RETRY_AFTER,
};
use concierge_llm::{collect, ChatEvent, ChatModel, ChatRequest, LlmError};

fn bad_request() -> LlmError {
    LlmError::Rejected { provider: "scripted".into(), status: 400, message: "bad request".into() }
}

fn rate_limited(retry_after: Duration) -> LlmError {
    LlmError::RateLimited { provider: "scripted".into(), retry_after: Some(retry_after) }
}

/// Retries come quickly in tests; the schedule itself is tested on `RetryPolicy`.
fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
}

/// A breaker that reads time from `clock`.
fn breaker_on(clock: &ManualClock, config: BreakerConfig) -> CircuitBreaker {
    CircuitBreaker::with_clock(config, clock.clock())
}

fn breaker_config(failure_threshold: u32) -> BreakerConfig {
    BreakerConfig { failure_threshold, open_for: Duration::from_secs(30), half_open_probes: 1 }
}

fn resilient(inner: &Arc<ScriptedModel>, policy: RetryPolicy, breaker: CircuitBreaker) -> ResilientModel {
    ResilientModel::with_breaker(Arc::clone(inner) as Arc<dyn ChatModel>, policy, breaker)
}

async fn text_of(model: &dyn ChatModel) -> Result<String, LlmError> {
    model.complete(&ChatRequest::default()).await.map(|response| response.text)
}

// Retries

#[tokio::test]
async fn a_call_succeeds_on_the_third_attempt_after_two_503s() {
    let inner = ScriptedModel::new("p/m", vec![Outcome::Fail(unavailable()), Outcome::Fail(unavailable())]);
    let model = resilient(&inner, quick_retries(3), CircuitBreaker::new(BreakerConfig::default()));

    assert_eq!(text_of(&model).await.unwrap(), "ok");
    assert_eq!(inner.calls(), 3);
    assert_eq!(model.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn retries_stop_after_max_attempts_with_the_last_error() {
    let inner = ScriptedModel::new("p/m", (0..5).map(|_| Outcome::Fail(unavailable())).collect());
    let model = resilient(&inner, quick_retries(3), CircuitBreaker::new(BreakerConfig::default()));

    assert_eq!(text_of(&model).await.unwrap_err(), unavailable());
    assert_eq!(inner.calls(), 3);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let inner = ScriptedModel::new("p/m", vec![Outcome::Fail(bad_request())]);
    let model = resilient(&inner, quick_retries(3), CircuitBreaker::new(BreakerConfig::default()));

    assert_eq!(text_of(&model).await.unwrap_err(), bad_request());
    assert_eq!(inner.calls(), 1);
}

#[tokio::test]
async fn a_failure_arriving_as_the_first_event_is_retried_like_a_failure_to_start() {
    let inner = ScriptedModel::new("p/m", vec![Outcome::Answer(vec![Err(unavailable())])]);
    let model = resilient(&inner, quick_retries(3), CircuitBreaker::new(BreakerConfig::default()));

    assert_eq!(text_of(&model).await.unwrap(), "ok");
    assert_eq!(inner.calls(), 2);
}

#[test]
fn retry_after_is_honoured_as_the_delay() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.delay(1, &rate_limited(Duration::from_secs(7))), Duration::from_secs(7));
    // Longer than max_delay still wins: the provider said so.
    assert_eq!(policy.delay(1, &rate_limited(Duration::from_secs(20))), Duration::from_secs(20));
}

#[test]
fn retry_after_is_capped_at_a_minute() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.delay(1, &rate_limited(Duration::from_secs(3600))), MAX_RETRY_AFTER);
    assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(60));
}

#[tokio::test]
async fn a_retry_waits_at_least_the_retry_after_the_provider_asked_for() {
    let wait = Duration::from_millis(40);
    let inner = ScriptedModel::new("p/m", vec![Outcome::Fail(rate_limited(wait))]);
    let model = resilient(&inner, quick_retries(2), CircuitBreaker::new(BreakerConfig::default()));

    let started = Instant::now();
    assert_eq!(text_of(&model).await.unwrap(), "ok");
    assert!(started.elapsed() >= wait, "retried after {:?}", started.elapsed());
    assert_eq!(inner.calls(), 2);
}

#[test]
fn backoff_ceilings_double_and_stop_at_max_delay() {
    let policy =
        RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) };
    let ceilings: Vec<u64> = (1..=7).map(|attempt| policy.backoff_ceiling(attempt).as_millis() as u64).collect();
    assert_eq!(ceilings, [200, 400, 800, 1600, 3200, 5000, 5000]);
    assert_eq!(policy.backoff_ceiling(u32::MAX), policy.max_delay);
}

#[test]
fn jittered_delays_stay_within_their_ceiling_and_grow_with_attempts() {
    let policy = RetryPolicy::default();
    let error = unavailable();
    let mut previous_longest = Duration::ZERO;
    for attempt in 1..=6 {
        let delays: Vec<Duration> = (0..200).map(|_| policy.delay(attempt, &error)).collect();
        let longest = delays.iter().copied().max().unwrap();
        assert!(longest <= policy.backoff_ceiling(attempt) && longest <= policy.max_delay);
        assert!(delays.iter().any(|d| *d != delays[0]), "delays are jittered");
        if policy.backoff_ceiling(attempt) < policy.max_delay {
            assert!(longest > previous_longest, "attempt {attempt}: {longest:?} <= {previous_longest:?}");
        }
        previous_longest = longest;
    }
}

#[test]
fn policies_read_from_config_take_defaults_for_missing_fields() {
    let policy: RetryPolicy = serde_json::from_str(r#"{"max_attempts": 4, "base_delay": "100ms"}"#).unwrap();
    assert_eq!(policy, RetryPolicy { max_attempts: 4, base_delay: Duration::from_millis(100), ..Default::default() });

    let breaker: BreakerConfig = serde_json::from_str(r#"{"open_for": "10s", "failure_threshold": 2}"#).unwrap();
    assert_eq!(breaker, BreakerConfig { failure_threshold: 2, open_for: Duration::from_secs(10), half_open_probes: 1 });

    let millis: RetryPolicy = serde_json::from_str(r#"{"max_delay": 750}"#).unwrap();
    assert_eq!(millis.max_delay, Duration::from_millis(750));

    assert!(serde_json::from_str::<RetryPolicy>(r#"{"base_delay": "soon"}"#).is_err());
}

// Circuit breaker

#[test]
fn breaker_opens_and_half_opens_on_schedule() {
    let clock = ManualClock::new();
    let breaker = breaker_on(&clock, breaker_config(3));

    for _ in 0..2 {
        assert!(breaker.try_acquire());
        breaker.record_failure();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(breaker.try_acquire());
    breaker.record_failure();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(!breaker.try_acquire());

    clock.advance(Duration::from_secs(29));
    assert!(!breaker.try_acquire());
    clock.advance(Duration::from_secs(1));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert!(breaker.try_acquire(), "the probe goes through");
    assert!(!breaker.try_acquire(), "one probe at a time");

    breaker.record_success();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(breaker.try_acquire());
}

#[test]
fn a_failed_probe_reopens_the_breaker_for_another_period() {
    let clock = ManualClock::new();
    let breaker = breaker_on(&clock, breaker_config(1));
    breaker.record_failure();
    clock.advance(Duration::from_secs(30));
    assert!(breaker.try_acquire());

    breaker.record_failure();
    assert_eq!(breaker.state(), BreakerState::Open);
    clock.advance(Duration::from_secs(29));
    assert!(!breaker.try_acquire());
    clock.advance(Duration::from_secs(1));
    assert!(breaker.try_acquire());
}

#[test]
fn a_half_open_breaker_admits_as_many_probes_as_configured() {
    let clock = ManualClock::new();
    let breaker = breaker_on(&clock, BreakerConfig { half_open_probes: 2, ..breaker_config(1) });
    breaker.record_failure();
    clock.advance(Duration::from_secs(30));
    assert!(breaker.try_acquire());
    assert!(breaker.try_acquire());
    assert!(!breaker.try_acquire());
}

#[test]
fn a_success_resets_the_count_of_consecutive_failures() {
    let breaker = breaker_on(&ManualClock::new(), breaker_config(2));
    breaker.record_failure();
    breaker.record_success();
    breaker.record_failure();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[test]
fn breaker_states_are_shown_in_lowercase() {
    let shown = serde_json::to_string(&[BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen]).unwrap();
    assert_eq!(shown, r#"["closed","open","half_open"]"#);
}

#[tokio::test]
async fn an_open_breaker_refuses_calls_without_calling_the_provider() {
    let clock = ManualClock::new();
    let inner = ScriptedModel::new("p/m", (0..2).map(|_| Outcome::Fail(unavailable())).collect());
    let model = resilient(&inner, quick_retries(5), breaker_on(&clock, breaker_config(2)));

    // The second failure opens the breaker, which ends the retries early.
    assert!(matches!(text_of(&model).await.unwrap_err(), LlmError::CircuitOpen { .. }));
    assert_eq!(inner.calls(), 2);
    assert_eq!(model.breaker().state(), BreakerState::Open);

    assert_eq!(text_of(&model).await.unwrap_err(), LlmError::CircuitOpen { provider: "p/m".into() });
    assert_eq!(inner.calls(), 2);

    clock.advance(Duration::from_secs(30));
    assert_eq!(text_of(&model).await.unwrap(), "ok");
    assert_eq!(inner.calls(), 3);
    assert_eq!(model.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_failed_probe_call_reopens_the_breaker() {
    let clock = ManualClock::new();
    let inner = ScriptedModel::new("p/m", (0..2).map(|_| Outcome::Fail(unavailable())).collect());
    let model = resilient(&inner, quick_retries(3), breaker_on(&clock, breaker_config(1)));

    assert!(text_of(&model).await.is_err());
    clock.advance(Duration::from_secs(30));
    assert!(matches!(text_of(&model).await.unwrap_err(), LlmError::CircuitOpen { .. }));
    assert_eq!(inner.calls(), 2, "one probe, not retried past the re-opened breaker");
    assert_eq!(model.breaker().state(), BreakerState::Open);
}

#[tokio::test]
async fn a_400_does_not_trip_the_breaker() {
    let inner = ScriptedModel::new("p/m", (0..3).map(|_| Outcome::Fail(bad_request())).collect());
    let model = resilient(&inner, quick_retries(3), breaker_on(&ManualClock::new(), breaker_config(1)));

    for _ in 0..3 {
        assert_eq!(text_of(&model).await.unwrap_err(), bad_request());
    }
    assert_eq!(inner.calls(), 3);
    assert_eq!(model.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_mid_stream_failure_is_passed_through_not_retried_but_counted() {
    let broken = || Outcome::Answer(vec![Ok(ChatEvent::TextDelta { text: "Hel".into() }), Err(unavailable())]);
    let inner = ScriptedModel::new("p/m", vec![broken(), broken()]);
    let model = resilient(&inner, quick_retries(3), breaker_on(&ManualClock::new(), breaker_config(2)));

    let mut events = model.stream(&ChatRequest::default()).await.unwrap();
    assert_eq!(events.next().await, Some(Ok(ChatEvent::TextDelta { text: "Hel".into() })));
    assert_eq!(events.next().await, Some(Err(unavailable())));
    assert_eq!(inner.calls(), 1);
    assert_eq!(model.breaker().state(), BreakerState::Closed);

    assert_eq!(collect(model.stream(&ChatRequest::default()).await.unwrap()).await.unwrap_err(), unavailable());
    assert_eq!(inner.calls(), 2);
    assert_eq!(model.breaker().state(), BreakerState::Open, "two mid-stream failures reach the threshold");
}

#[tokio::test]
async fn an_answer_dropped_half_read_frees_the_probe_slot() {
    let clock = ManualClock::new();
    let inner = ScriptedModel::new("p/m", vec![]);
    let model = resilient(&inner, quick_retries(1), breaker_on(&clock, breaker_config(1)));
    model.breaker().record_failure();
    clock.advance(Duration::from_secs(30));

    drop(model.stream(&ChatRequest::default()).await.unwrap());
    assert_eq!(model.breaker().state(), BreakerState::Closed);
}

// Fallback chain

fn chain(models: &[&Arc<ScriptedModel>]) -> FallbackChain {
    let mut models = models.iter().map(|m| Arc::clone(m) as Arc<dyn ChatModel>);
    let primary = models.next().unwrap();
    FallbackChain::new(primary, models)
}

#[tokio::test]
async fn the_chain_answers_from_the_first_model_when_it_works() {
    let first = ScriptedModel::new("a/first", vec![answer("from first")]);
    let second = ScriptedModel::new("b/second", vec![]);
    let chain = chain(&[&first, &second]);

    let (route, events) = chain.stream_with_route(&ChatRequest::default()).await.unwrap();
    assert_eq!(route, "a/first");
    assert_eq!(collect(events).await.unwrap().text, "from first");
    assert_eq!(second.calls(), 0);
    assert_eq!(chain.id(), "a/first");
}

#[tokio::test]
async fn the_chain_falls_back_in_order_when_the_first_fails_retryably() {
    let first = ScriptedModel::new("a/first", vec![Outcome::Fail(unavailable())]);
    let second = ScriptedModel::new("b/second", vec![answer("from second")]);
    let third = ScriptedModel::new("c/third", vec![]);
    let chain = chain(&[&first, &second, &third]);

    let (route, events) = chain.stream_with_route(&ChatRequest::default()).await.unwrap();
    assert_eq!(route, "b/second");
    assert_eq!(collect(events).await.unwrap().text, "from second");
    assert_eq!((first.calls(), second.calls(), third.calls()), (1, 1, 0));
}

#[tokio::test]
async fn the_chain_falls_back_past_an_open_breaker() {
    let first = ScriptedModel::new("a/first", vec![]);
    let guarded = resilient(&first, quick_retries(1), breaker_on(&ManualClock::new(), breaker_config(1)));
    guarded.breaker().record_failure();
    let second = ScriptedModel::new("b/second", vec![answer("from second")]);
    let chain = FallbackChain::new(Arc::new(guarded), [Arc::clone(&second) as Arc<dyn ChatModel>]);

    let (route, _) = chain.stream_with_route(&ChatRequest::default()).await.unwrap();
    assert_eq!(route, "b/second");
    assert_eq!(first.calls(), 0);
}

#[tokio::test]
async fn a_non_retryable_error_stops_the_chain() {
    let first = ScriptedModel::new("a/first", vec![Outcome::Fail(bad_request())]);
    let second = ScriptedModel::new("b/second", vec![]);
    let chain = chain(&[&first, &second]);

    assert_eq!(text_of(&chain).await.unwrap_err(), bad_request());
    assert_eq!(second.calls(), 0);
}

#[tokio::test]
async fn when_every_model_fails_the_chain_is_exhausted_and_lists_each_failure() {
    let first = ScriptedModel::new("a/first", vec![Outcome::Fail(unavailable())]);
    let second = ScriptedModel::new("b/second", vec![Outcome::Fail(rate_limited(Duration::from_secs(1)))]);
    let chain = chain(&[&first, &second]);

    let LlmError::Exhausted(failures) = text_of(&chain).await.unwrap_err() else { panic!("expected Exhausted") };
    assert!(failures.contains(&format!("a/first: {}", unavailable())), "{failures}");
    assert!(failures.contains(&format!("b/second: {}", rate_limited(Duration::from_secs(1)))), "{failures}");
    assert!(failures.find("a/first") < failures.find("b/second"));
}
