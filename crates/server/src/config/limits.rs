//! `[rate_limits]`: token buckets per API key, per end user and per client address, sized
//! by the tenant's tier.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Take the client's address from the first `X-Forwarded-For` entry. Only behind a
    /// proxy that sets it: otherwise any client could name any address.
    pub trust_forwarded_for: bool,
    /// Bucket sizes by tier (`tenant.tier` picks one).
    pub tiers: BTreeMap<String, TierLimits>,
}

/// The three buckets of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Per API key (or JWT subject).
    pub key: Quota,
    /// Per end user: the conversation a widget talks in, or the `X-End-User` an operator's
    /// integration names.
    pub user: Quota,
    /// Per client address, checked before the credential is.
    pub ip: Quota,
}

/// A bucket: refilled at `per_minute`, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

impl Quota {
    /// The largest bucket the checks allow: nothing a client sends empties it.
    pub fn unlimited() -> Self {
        Quota { per_minute: 6_000_000, burst: 1_000_000 }
    }
}

const fn quota(per_minute: u32, burst: u32) -> Quota {
    Quota { per_minute, burst }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let tiers = [
            ("free", quota(120, 30), quota(30, 10), quota(120, 40)),
            ("basic", quota(600, 100), quota(60, 20), quota(600, 100)),
            ("standard", quota(600, 100), quota(60, 20), quota(600, 100)),
            ("premium", quota(3_000, 300), quota(120, 30), quota(1_200, 200)),
            ("enterprise", quota(12_000, 1_000), quota(300, 60), quota(3_000, 500)),
        ];
        Self {
            enabled: true,
            trust_forwarded_for: false,
            tiers: tiers
                .into_iter()
                .map(|(name, key, user, ip)| (name.to_owned(), TierLimits { key, user, ip }))
                .collect(),
        }
    }
}

impl RateLimitConfig {
    /// The first problem found, as (key, problem).
    pub fn validate(&self, tier: &str) -> Result<(), (String, String)> {
        if !self.enabled {
            return Ok(());
        }
        if !self.tiers.contains_key(tier) {
            let known = self.tiers.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(("tenant.tier".into(), format!("is `{tier}`, which rate_limits.tiers lacks (it has {known})")));
        }
        for (name, limits) in &self.tiers {
            for (scope, q) in [("key", limits.key), ("user", limits.user), ("ip", limits.ip)] {
                if !(1..=6_000_000).contains(&q.per_minute) || !(1..=1_000_000).contains(&q.burst) {
                    return Err((
                        format!("rate_limits.tiers.{name}.{scope}"),
                        "expected per_minute 1 to 6000000 and burst 1 to 1000000".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenants_tier_must_exist_and_buckets_must_be_sized() {
        let config = RateLimitConfig::default();
        assert_eq!(config.validate("standard"), Ok(()));
        assert_eq!(config.validate("gold").map_err(|(key, _)| key), Err("tenant.tier".into()));
        let off = RateLimitConfig { enabled: false, ..RateLimitConfig::default() };
        assert_eq!(off.validate("gold"), Ok(()), "no tier is needed with the limits off");
        let mut empty = RateLimitConfig::default();
        empty.tiers.get_mut("free").unwrap().user = Quota { per_minute: 0, burst: 5 };
        assert_eq!(empty.validate("standard").map_err(|(key, _)| key), Err("rate_limits.tiers.free.user".into()));
    }
}
