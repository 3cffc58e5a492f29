//! `GET /readyz`: whether the process can take work, and how each dependency stands.
//!
//! Only the store decides readiness: without it nothing can be kept, so a balancer should send
//! nothing. Everything else degrades a feature and not the service, so it is reported but keeps
//! the process ready: an open breaker (the agent answers without that model, or hands over with
//! a ticket), rate limits kept per process while Redis does not answer.

use concierge_llm::resilience::BreakerState;
use concierge_store::Store;
use serde::Serialize;

use crate::telemetry::Sources;

/// The answer of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub status: Status,
    pub store: StoreHealth,
    /// Every configured model provider and its breaker; empty without a model.
    pub models: Vec<ModelHealth>,
    pub rate_limits: RateLimitHealth,
    pub jobs: JobsHealth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every dependency answers.
    Ready,
    /// Serving, with a model's breaker open or rate limits kept in this process only.
    Degraded,
    /// The store does not answer: not ready.
    Unavailable,
}

#[derive(Debug, Serialize)]
pub struct StoreHealth {
    pub up: bool,
    pub backend: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ModelHealth {
    pub provider: String,
    pub breaker: BreakerState,
}

#[derive(Debug, Serialize)]
pub struct RateLimitHealth {
    /// `redis`, `memory`, or `memory (redis unavailable)`.
    pub backend: String,
    pub falling_back: bool,
}

#[derive(Debug, Serialize)]
pub struct JobsHealth {
    pub queue_depth: usize,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status != Status::Unavailable
    }
}

/// Asks the store and reads how the rest stands. The store's error goes to the log only: its
/// text may name hosts and databases.
pub async fn readiness(store: &dyn Store, sources: &Sources) -> Readiness {
    let store_up = match store.ping().await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "readiness: the store does not answer");
            false
        }
    };
    let models: Vec<ModelHealth> =
        sources.breaker_states().into_iter().map(|(provider, breaker)| ModelHealth { provider, breaker }).collect();
    let rate_limits =
        RateLimitHealth { backend: sources.limits.status().backend, falling_back: sources.limits.falling_back() };
    let status = if !store_up {
        Status::Unavailable
    } else if rate_limits.falling_back || models.iter().any(|m| m.breaker == BreakerState::Open) {
        Status::Degraded
    } else {
        Status::Ready
    };
    Readiness {
        status,
        store: StoreHealth { up: store_up, backend: store.backend() },
        models,
        rate_limits,
        jobs: JobsHealth { queue_depth: sources.jobs.queue_depth() },
    }
}
