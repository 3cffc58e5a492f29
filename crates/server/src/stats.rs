//! The live figures of the operator console: the last hour of answered turns, minute by
//! minute, kept in this process (they start again from nothing when it restarts; the
//! durable record is the store).
//!
//! Each minute keeps its counts and its turns' latencies, at most [`LATENCIES_PER_MINUTE`]
//! of them (a uniform sample beyond that), so percentiles stay exact for ordinary loads and
//! memory stays bounded under any.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;

/// How far back the figures reach.
pub const WINDOW_MINUTES: i64 = 60;
const LATENCIES_PER_MINUTE: usize = 2_048;

/// How a turn ended, as far as the figures care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnOutcome {
    /// Answered without a person: a tool's result, the knowledge base, a fixed reply.
    Resolved,
    /// Handed to a person (a ticket was opened).
    Escalated,
    /// Anything else: a question back, a clarification, an approval pending, a failure.
    Open,
}

impl TurnOutcome {
    /// The outcome a reply's `metadata.answered_by` tells.
    pub fn of(answered_by: &str) -> Self {
        match answered_by {
            "tool" | "tool_model" | "fixed_reply" | "knowledge_base_llm" | "knowledge_base_quote" => Self::Resolved,
            "escalation" => Self::Escalated,
            _ => Self::Open,
        }
    }

    /// Its name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resolved => "resolved",
            Self::Escalated => "escalated",
            Self::Open => "open",
        }
    }
}

#[derive(Debug, Default)]
struct Minute {
    start: DateTime<Utc>,
    turns: u64,
    resolved: u64,
    escalated: u64,
    cost_micros: i64,
    latencies_ms: Vec<f64>,
    ratings: u64,
    thumbs_down: u64,
}

/// The recorder; cheap to call from every turn.
#[derive(Debug, Default)]
pub struct Stats {
    minutes: Mutex<VecDeque<Minute>>,
}

/// What `GET /v1/stats` answers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    pub window_minutes: i64,
    pub requests: u64,
    pub latency_ms: Percentiles,
    /// Of the turns, the share answered without a person; `None` with no turns.
    pub resolution_rate: Option<f64>,
    pub escalation_rate: Option<f64>,
    /// Of the ratings given, the share that were thumbs down.
    pub thumbs_down_rate: Option<f64>,
    pub cost_micros: i64,
    /// One entry per minute of the window, oldest first, empty minutes included.
    pub series: Vec<MinutePoint>,
    /// Where the rate limits are kept and how many requests they refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<crate::ratelimit::LimitStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MinutePoint {
    pub minute: DateTime<Utc>,
    pub requests: u64,
    pub p95_ms: Option<f64>,
    pub cost_micros: i64,
    pub escalations: u64,
}

impl Stats {
    pub fn record_turn(&self, at: DateTime<Utc>, outcome: TurnOutcome, latency_ms: f64, cost_micros: i64) {
        self.with_minute(at, |minute| {
            minute.turns += 1;
            match outcome {
                TurnOutcome::Resolved => minute.resolved += 1,
                TurnOutcome::Escalated => minute.escalated += 1,
                TurnOutcome::Open => {}
            }
            minute.cost_micros += cost_micros.max(0);
            if minute.latencies_ms.len() < LATENCIES_PER_MINUTE {
                minute.latencies_ms.push(latency_ms);
            } else {
                // Reservoir sampling keeps every turn equally likely to be in the sample.
                let slot = (fastrand_u64(minute.turns) % minute.turns) as usize;
                if let Some(kept) = minute.latencies_ms.get_mut(slot) {
                    *kept = latency_ms;
                }
            }
        });
    }

    pub fn record_rating(&self, at: DateTime<Utc>, rating: i16) {
        self.with_minute(at, |minute| {
            minute.ratings += 1;
            if rating < 0 {
                minute.thumbs_down += 1;
            }
        });
    }

    fn with_minute(&self, at: DateTime<Utc>, update: impl FnOnce(&mut Minute)) {
        let start = minute_of(at);
        let mut minutes = self.minutes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if minutes.back().is_none_or(|last| last.start < start) {
            minutes.push_back(Minute { start, ..Minute::default() });
        }
        // A turn that finishes late may belong to an earlier minute still in the window.
        if let Some(minute) = minutes.iter_mut().rev().find(|m| m.start <= start) {
            update(minute);
        }
        let oldest = start - TimeDelta::minutes(WINDOW_MINUTES);
        while minutes.front().is_some_and(|m| m.start <= oldest) {
            minutes.pop_front();
        }
    }

    /// The last hour up to `now`.
    pub fn report(&self, now: DateTime<Utc>) -> StatsReport {
        let current = minute_of(now);
        let first = current - TimeDelta::minutes(WINDOW_MINUTES - 1);
        let minutes = self.minutes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let in_window: Vec<&Minute> = minutes.iter().filter(|m| m.start >= first && m.start <= current).collect();
        let (mut turns, mut resolved, mut escalated, mut ratings, mut down, mut cost) = (0, 0, 0, 0, 0, 0);
        let mut latencies = Vec::new();
        for m in &in_window {
            turns += m.turns;
            resolved += m.resolved;
            escalated += m.escalated;
            ratings += m.ratings;
            down += m.thumbs_down;
            cost += m.cost_micros;
            latencies.extend_from_slice(&m.latencies_ms);
        }
        let series = (0..WINDOW_MINUTES)
            .map(|i| {
                let start = first + TimeDelta::minutes(i);
                match in_window.iter().find(|m| m.start == start) {
                    Some(m) => MinutePoint {
                        minute: start,
                        requests: m.turns,
                        p95_ms: percentile(&mut m.latencies_ms.clone(), 0.95),
                        cost_micros: m.cost_micros,
                        escalations: m.escalated,
                    },
                    None => MinutePoint { minute: start, requests: 0, p95_ms: None, cost_micros: 0, escalations: 0 },
                }
            })
            .collect();
        let share = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        StatsReport {
            window_minutes: WINDOW_MINUTES,
            requests: turns,
            latency_ms: Percentiles {
                p50: percentile(&mut latencies.clone(), 0.5),
                p95: percentile(&mut latencies, 0.95),
            },
            resolution_rate: share(resolved, turns),
            escalation_rate: share(escalated, turns),
            thumbs_down_rate: share(down, ratings),
            cost_micros: cost,
            series,
            rate_limits: None,
        }
    }
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// The nearest-rank percentile.
fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// A cheap, well-mixed number from a counter (splitmix64): enough for sampling, with no
/// generator state to share between threads.
fn fastrand_u64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: i64, second: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap() + TimeDelta::minutes(minute) + TimeDelta::seconds(second)
    }

    #[test]
    fn the_report_adds_up_the_window_minute_by_minute() {
        let stats = Stats::default();
        stats.record_turn(at(0, 5), TurnOutcome::Resolved, 100.0, 10);
        stats.record_turn(at(0, 50), TurnOutcome::Escalated, 300.0, 0);
        stats.record_turn(at(2, 1), TurnOutcome::Open, 200.0, 5);
        stats.record_rating(at(2, 3), -1);
        stats.record_rating(at(2, 4), 1);

        let report = stats.report(at(2, 30));
        assert_eq!(report.requests, 3);
        assert_eq!(report.latency_ms, Percentiles { p50: Some(200.0), p95: Some(300.0) });
        assert_eq!(report.resolution_rate, Some(1.0 / 3.0));
        assert_eq!(report.escalation_rate, Some(1.0 / 3.0));
        assert_eq!(report.thumbs_down_rate, Some(0.5));
        assert_eq!(report.cost_micros, 15);
        assert_eq!(report.series.len(), 60);
        let last = &report.series[59];
        assert_eq!((last.minute, last.requests, last.p95_ms), (at(2, 0), 1, Some(200.0)));
        let two_ago = &report.series[57];
        assert_eq!((two_ago.minute, two_ago.requests, two_ago.escalations), (at(0, 0), 2, 1));
        assert_eq!(report.series[58].requests, 0);
    }

    #[test]
    fn turns_older_than_the_window_drop_out() {
        let stats = Stats::default();
        stats.record_turn(at(0, 0), TurnOutcome::Resolved, 100.0, 1);
        stats.record_turn(at(61, 0), TurnOutcome::Resolved, 50.0, 1);
        let report = stats.report(at(61, 10));
        assert_eq!(report.requests, 1);
        assert_eq!(report.latency_ms.p50, Some(50.0));
        assert_eq!(stats.minutes.lock().unwrap().len(), 1, "the old minute is no longer kept");
    }

    #[test]
    fn an_empty_window_reports_no_rates() {
        let report = Stats::default().report(at(0, 0));
        assert_eq!((report.requests, report.resolution_rate, report.latency_ms.p95), (0, None, None));
        assert!(report.series.iter().all(|p| p.requests == 0));
    }

    #[test]
    fn a_busy_minute_keeps_a_bounded_sample() {
        let stats = Stats::default();
        for i in 0..(LATENCIES_PER_MINUTE as u64 * 3) {
            stats.record_turn(at(0, 1), TurnOutcome::Resolved, i as f64, 0);
        }
        let report = stats.report(at(0, 2));
        assert_eq!(report.requests, LATENCIES_PER_MINUTE as u64 * 3);
        assert_eq!(stats.minutes.lock().unwrap()[0].latencies_ms.len(), LATENCIES_PER_MINUTE);
        let p50 = report.latency_ms.p50.unwrap();
        assert!(p50 > 1_000.0 && p50 < 5_000.0, "the sample spans the minute: p50 {p50}");
    }

    #[test]
    fn answered_by_tells_the_outcome() {
        assert_eq!(TurnOutcome::of("knowledge_base_quote"), TurnOutcome::Resolved);
        assert_eq!(TurnOutcome::of("escalation"), TurnOutcome::Escalated);
        assert_eq!(TurnOutcome::of("ask"), TurnOutcome::Open);
    }
}
