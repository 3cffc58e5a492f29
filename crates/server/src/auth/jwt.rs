//! JWT bearer tokens from the issuers of `[[auth.jwt]]`: signature (HS256 with a shared
//! secret, RS256/ES256 with a key of the issuer's JWKS), `iss`, `aud`, `exp` and `nbf`
//! checked by `jsonwebtoken`; the role and tenant are read from configured claims.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use concierge_core::{ApiRole, TenantId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{AuthError, Principal};
use crate::config::{JwtAlgorithm, JwtIssuerConfig, Secrets};

/// A JWKS URL is fetched again for an unknown key id at most this often.
const REFETCH_AT_MOST: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

enum Keys {
    Secret(DecodingKey),
    File(JwkSet),
    Url { url: String, set: Mutex<(JwkSet, Option<Instant>)>, refresh: Duration },
}

/// One trusted issuer, ready to check tokens.
pub struct Issuer {
    config: JwtIssuerConfig,
    keys: Keys,
    validation: Validation,
}

/// Why an issuer could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("auth.jwt issuer `{issuer}`: {problem}")]
pub struct IssuerError {
    issuer: String,
    problem: String,
}

impl Issuer {
    pub async fn load(
        config: &JwtIssuerConfig,
        secrets: &Secrets,
        http: &reqwest::Client,
    ) -> Result<Self, IssuerError> {
        let fail = |problem: String| IssuerError { issuer: config.issuer.clone(), problem };
        let keys = if let Some(var) = &config.secret_env {
            let secret = secrets.jwt_secrets.get(var).ok_or_else(|| fail(format!("`{var}` is not set")))?;
            Keys::Secret(DecodingKey::from_secret(secret.expose_secret().as_bytes()))
        } else if let Some(file) = &config.jwks_file {
            let text = std::fs::read_to_string(file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
            Keys::File(serde_json::from_str(&text).map_err(|e| fail(format!("{} is not a JWKS: {e}", file.display())))?)
        } else if let Some(url) = &config.jwks_url {
            // An issuer that cannot be reached now is not fatal: its tokens are refused until
            // a fetch succeeds.
            let set = match fetch(http, url).await {
                Ok(set) => set,
                Err(problem) => {
                    tracing::warn!(issuer = %config.issuer, %problem, "could not fetch the issuer's JWKS; will retry");
                    JwkSet { keys: Vec::new() }
                }
            };
            let refresh = Duration::from_secs(config.jwks_refresh_secs);
            Keys::Url { url: url.clone(), set: Mutex::new((set, Some(Instant::now()))), refresh }
        } else {
            return Err(fail("no key source".into()));
        };
        let algorithms: Vec<Algorithm> = config
            .algorithms
            .iter()
            .map(|a| match a {
                JwtAlgorithm::HS256 => Algorithm::HS256,
                JwtAlgorithm::RS256 => Algorithm::RS256,
                JwtAlgorithm::ES256 => Algorithm::ES256,
            })
            .collect();
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway_secs;
        Ok(Self { config: config.clone(), keys, validation })
    }

    pub fn name(&self) -> &str {
        &self.config.issuer
    }

    /// Checks `token`, which this issuer's `iss` names, and reads who it speaks for.
    pub async fn check(&self, token: &str, http: &reqwest::Client, tenant: &TenantId) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidCredentials)?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::InvalidCredentials);
        }
        let key = match &self.keys {
            Keys::Secret(key) => key.clone(),
            Keys::File(set) => from_set(set, header.kid.as_deref())?,
            Keys::Url { url, set, refresh } => {
                let (known, stale) = {
                    let held = set.lock().unwrap_or_else(|p| p.into_inner());
                    let age = held.1.map(|at| at.elapsed());
                    (from_set(&held.0, header.kid.as_deref()).ok(), age.is_none_or(|a| a > *refresh))
                };
                match known {
                    Some(key) if !stale => key,
                    _ => {
                        self.refetch(http, url, set).await;
                        let held = set.lock().unwrap_or_else(|p| p.into_inner());
                        from_set(&held.0, header.kid.as_deref())?
                    }
                }
            }
        };
        // The library wants every algorithm of a validation to fit the key: the token's own
        // one, already checked to be among the issuer's.
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::TokenExpired,
            ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
            _ => AuthError::InvalidCredentials,
        })?;
        self.principal(&data.claims, tenant)
    }

    fn principal(&self, claims: &Value, tenant: &TenantId) -> Result<Principal, AuthError> {
        let roles: Vec<&str> = match claims.get(&self.config.role_claim) {
            Some(Value::String(role)) => vec![role.as_str()],
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let role =
            roles.iter().filter_map(|r| r.parse::<ApiRole>().ok()).max_by_key(|r| super::policy::rank(*r)).ok_or_else(
                || AuthError::Forbidden(format!("the token has no known role in `{}`", self.config.role_claim)),
            )?;
        if let Some(claim) = &self.config.tenant_claim {
            if claims.get(claim).and_then(Value::as_str) != Some(tenant.as_str()) {
                return Err(AuthError::WrongTenant);
            }
        }
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("-");
        let subject: String = subject.chars().take(120).collect();
        Ok(Principal { tenant: tenant.clone(), role, subject: format!("jwt:{}:{subject}", self.config.issuer) })
    }

    /// Fetches the set again unless it was fetched (or tried) in the last
    /// [`REFETCH_AT_MOST`]. The attempt is claimed before the fetch, so requests arriving
    /// meanwhile use the set held, and a down issuer is not asked by every request.
    async fn refetch(&self, http: &reqwest::Client, url: &str, set: &Mutex<(JwkSet, Option<Instant>)>) {
        {
            let mut held = set.lock().unwrap_or_else(|p| p.into_inner());
            if held.1.is_some_and(|at| at.elapsed() < REFETCH_AT_MOST) {
                return;
            }
            held.1 = Some(Instant::now());
        }
        match fetch(http, url).await {
            Ok(fresh) => *set.lock().unwrap_or_else(|p| p.into_inner()) = (fresh, Some(Instant::now())),
            Err(problem) => tracing::warn!(issuer = %self.config.issuer, %problem, "could not fetch the issuer's JWKS"),
        }
    }
}

/// The key of `set` a token's `kid` names; a set of one key serves tokens without `kid`.
fn from_set(set: &JwkSet, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
    let jwk = match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    };
    jwk.and_then(|jwk| DecodingKey::from_jwk(jwk).ok()).ok_or(AuthError::InvalidCredentials)
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let response = http.get(url).timeout(FETCH_TIMEOUT).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response.json::<JwkSet>().await.map_err(|e| format!("{url} did not answer a JWKS: {e}"))
}

/// The `iss` of a token, read without checking anything: only to find its issuer.
pub fn issuer_of(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}
