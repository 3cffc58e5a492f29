//! Rate limits: a token bucket per API key, per end user and per client address, sized by
//! the tenant's tier, answered with 429 `rate_limited` and `Retry-After`.
//!
//! The buckets are kept as GCRA ("generic cell rate algorithm"): one number per bucket,
//! the time at which it would be full again. In memory by default; with `REDIS_URL` set,
//! in Redis, by a script that does the same arithmetic on the server's clock, so several
//! processes enforce one limit. If Redis cannot answer within [`REDIS_TIMEOUT`], the check
//! is made in this process's memory instead (the service stays up, each process then
//! enforcing the limit alone), a warning is logged once, and the status says so.
//!
//! Written here rather than taken from `governor`: the in-memory buckets must agree with
//! the Redis ones to the microsecond, and that crate has no shared-store backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Quota, RateLimitConfig, TierLimits};
use crate::error::ApiError;

/// How long a Redis check may take before memory answers instead.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, how long before it is tried again.
const REDIS_RETRY: Duration = Duration::from_secs(5);
/// Buckets kept in memory at most; past it, the full ones are forgotten.
const MAX_BUCKETS: usize = 200_000;

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    User,
    Ip,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::User => "user",
            Scope::Ip => "ip",
        }
    }
}

/// The limits' state, for operators.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LimitStatus {
    pub enabled: bool,
    /// `redis`, `memory`, or `memory (redis unavailable)`.
    pub backend: String,
    /// Checks answered from memory because Redis could not answer.
    pub redis_fallbacks: u64,
    /// Requests refused with 429.
    pub limited: u64,
}

/// Microseconds per token and the bucket's size.
#[derive(Debug, Clone, Copy)]
struct Cell {
    interval_us: u64,
    burst: u64,
}

impl From<Quota> for Cell {
    fn from(q: Quota) -> Self {
        Self { interval_us: 60_000_000 / u64::from(q.per_minute.max(1)), burst: u64::from(q.burst.max(1)) }
    }
}

/// GCRA on a stored "full again at" time: `Ok(new time)` when a token is taken,
/// `Err(wait)` when the bucket is empty.
fn take(tat: u64, now: u64, cell: Cell) -> Result<u64, u64> {
    let new_tat = tat.max(now) + cell.interval_us;
    let allow_at = new_tat.saturating_sub(cell.burst * cell.interval_us);
    if allow_at > now {
        Err(allow_at - now)
    } else {
        Ok(new_tat)
    }
}

/// The same arithmetic in Redis, on Redis's clock. Returns {1, 0} or {0, wait in µs}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"#;

struct Memory {
    started: Instant,
    buckets: Mutex<HashMap<String, u64>>,
}

impl Memory {
    fn take(&self, key: &str, cell: Cell) -> Result<(), u64> {
        let now = self.started.elapsed().as_micros() as u64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, tat| *tat > now);
        }
        let tat = buckets.get(key).copied().unwrap_or(0);
        let new_tat = take(tat, now, cell)?;
        buckets.insert(key.to_owned(), new_tat);
        Ok(())
    }
}

struct Redis {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    retry_at: Mutex<Option<Instant>>,
    script: redis::Script,
}

impl Redis {
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, String> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref() {
            return Ok(connection.clone());
        }
        if self.retry_at.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| Instant::now() < at) {
            return Err("not retried yet".into());
        }
        let made = tokio::time::timeout(REDIS_TIMEOUT, redis::aio::ConnectionManager::new(self.client.clone())).await;
        match made {
            Ok(Ok(connection)) => {
                *held = Some(connection.clone());
                Ok(connection)
            }
            failed => {
                *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + REDIS_RETRY);
                Err(match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "connecting timed out".into(),
                })
            }
        }
    }

    async fn take(&self, key: &str, cell: Cell) -> Result<Result<(), u64>, String> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.key(key);
        invocation.arg(cell.interval_us).arg(cell.burst);
        let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
        let answer = tokio::time::timeout(REDIS_TIMEOUT, call)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        match answer.as_slice() {
            [1, _] => Ok(Ok(())),
            [0, wait] => Ok(Err((*wait).max(0) as u64)),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }
}

/// The buckets of this process (and of every process sharing its Redis).
pub struct RateLimits {
    enabled: bool,
    trust_forwarded_for: bool,
    limits: TierLimits,
    /// Redis keys are `concierge:rl:<tenant>:<scope>:<digest of the id>`.
    namespace: String,
    memory: Memory,
    redis: Option<Redis>,
    redis_up: AtomicBool,
    fallbacks: AtomicU64,
    limited: AtomicU64,
}

impl RateLimits {
    /// The limits of `tier`; `redis_url` shares them. A Redis URL that does not parse is a
    /// start-up error; a Redis that does not answer is not.
    pub fn new(
        config: &RateLimitConfig,
        tier: &str,
        tenant: &str,
        redis_url: Option<&SecretString>,
    ) -> Result<Self, String> {
        let fallback = TierLimits { key: Quota::unlimited(), user: Quota::unlimited(), ip: Quota::unlimited() };
        let limits = config.tiers.get(tier).copied().unwrap_or(fallback);
        let redis = match redis_url.filter(|_| config.enabled) {
            Some(url) => {
                let client = redis::Client::open(url.expose_secret())
                    .map_err(|e| format!("REDIS_URL is not a Redis URL: {}", e.category()))?;
                Some(Redis {
                    client,
                    connection: tokio::sync::Mutex::new(None),
                    retry_at: Mutex::new(None),
                    script: redis::Script::new(SCRIPT),
                })
            }
            None => None,
        };
        if redis.is_some() {
            tracing::info!("rate limits are shared through Redis (REDIS_URL)");
        }
        Ok(Self {
            enabled: config.enabled,
            trust_forwarded_for: config.trust_forwarded_for,
            limits,
            namespace: format!("concierge:rl:{tenant}"),
            memory: Memory { started: Instant::now(), buckets: Mutex::new(HashMap::new()) },
            redis_up: AtomicBool::new(redis.is_some()),
            redis,
            fallbacks: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn trust_forwarded_for(&self) -> bool {
        self.trust_forwarded_for
    }

    /// Takes a token from the `scope` bucket of `id`, or says how long to wait.
    pub async fn check(&self, scope: Scope, id: &str) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let quota = match scope {
            Scope::Key => self.limits.key,
            Scope::User => self.limits.user,
            Scope::Ip => self.limits.ip,
        };
        let cell = Cell::from(quota);
        // The id may be an end user's reference or an address: only its digest is kept.
        let digest = Sha256::digest(id.as_bytes());
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("{}:{}:{hex}", self.namespace, scope.as_str());
        let verdict = match &self.redis {
            Some(redis) => match redis.take(&key, cell).await {
                Ok(verdict) => {
                    if !self.redis_up.swap(true, Ordering::Relaxed) {
                        tracing::warn!("Redis answers again; rate limits are shared again");
                    }
                    verdict
                }
                Err(problem) => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    if self.redis_up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(%problem, "Redis cannot answer; rate limits are kept in this process until it does");
                    }
                    self.memory.take(&key, cell)
                }
            },
            None => self.memory.take(&key, cell),
        };
        verdict.map_err(|wait_us| {
            self.limited.fetch_add(1, Ordering::Relaxed);
            ApiError::RateLimited { scope: scope.as_str(), retry_after_secs: wait_us.div_ceil(1_000_000).max(1) }
        })
    }

    /// Whether the limits are kept in memory because Redis does not answer.
    pub fn falling_back(&self) -> bool {
        self.redis.is_some() && !self.redis_up.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> LimitStatus {
        let backend = match (&self.redis, self.falling_back()) {
            (None, _) => "memory",
            (Some(_), false) => "redis",
            (Some(_), true) => "memory (redis unavailable)",
        };
        LimitStatus {
            enabled: self.enabled,
            backend: backend.into(),
            redis_fallbacks: self.fallbacks.load(Ordering::Relaxed),
            limited: self.limited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_one_token_per_interval() {
        let cell = Cell::from(Quota { per_minute: 60, burst: 3 });
        let mut tat = 0;
        let now = 10_000_000;
        for _ in 0..3 {
            tat = take(tat, now, cell).expect("within the burst");
        }
        let wait = take(tat, now, cell).expect_err("the burst is spent");
        assert_eq!(wait, 1_000_000, "one token a second");
        assert!(take(tat, now + 999_999, cell).is_err());
        let tat = take(tat, now + 1_000_000, cell).expect("a token came back");
        assert!(take(tat, now + 1_000_000, cell).is_err());
    }

    #[tokio::test]
    async fn limits_are_kept_per_scope_and_id_and_refused_with_retry_after() {
        let mut config = RateLimitConfig::default();
        let tier = TierLimits {
            key: Quota { per_minute: 1, burst: 2 },
            user: Quota { per_minute: 1, burst: 1 },
            ip: Quota { per_minute: 1, burst: 1 },
        };
        config.tiers.insert("test".into(), tier);
        let limits = RateLimits::new(&config, "test", "acme", None).unwrap();
        assert!(limits.check(Scope::Key, "a").await.is_ok());
        assert!(limits.check(Scope::Key, "a").await.is_ok());
        let refused = limits.check(Scope::Key, "a").await.unwrap_err();
        assert!(matches!(refused, ApiError::RateLimited { scope: "key", retry_after_secs: 60 }), "{refused:?}");
        assert!(limits.check(Scope::Key, "b").await.is_ok(), "another key has its own bucket");
        assert!(limits.check(Scope::User, "a").await.is_ok(), "a user bucket is not the key's");
        assert!(limits.check(Scope::User, "a").await.is_err());
        assert_eq!(limits.status().limited, 2);
        assert_eq!(limits.status().backend, "memory");

        config.enabled = false;
        let off = RateLimits::new(&config, "test", "acme", None).unwrap();
        for _ in 0..10 {
            assert!(off.check(Scope::Ip, "x").await.is_ok());
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_leaves_the_limits_to_memory() {
        let mut config = RateLimitConfig::default();
        let tier =
            TierLimits { key: Quota { per_minute: 1, burst: 1 }, user: Quota::unlimited(), ip: Quota::unlimited() };
        config.tiers.insert("test".into(), tier);
        let url = SecretString::from("redis://127.0.0.1:1/");
        let limits = RateLimits::new(&config, "test", "acme", Some(&url)).unwrap();
        assert!(limits.check(Scope::Key, "a").await.is_ok());
        assert!(limits.check(Scope::Key, "a").await.is_err(), "still limited, in memory");
        let status = limits.status();
        assert_eq!(status.backend, "memory (redis unavailable)");
        assert!(status.redis_fallbacks >= 2, "{status:?}");
        assert!(RateLimits::new(&config, "test", "acme", Some(&SecretString::from("not a url"))).is_err());
    }
}
