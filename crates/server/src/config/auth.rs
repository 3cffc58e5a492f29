//! `[auth]`: where the keys of the environment are, and the JWT issuers trusted.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Keys read from the environment must be at least this long.
pub const MIN_KEY_CHARS: usize = 24;
/// HMAC secrets (JWT HS256, conversation tokens) must be at least this many bytes.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The variable holding a key of role `admin` that is accepted without being stored
    /// (the first key of a new installation; `concierge keys create` makes stored ones).
    pub admin_key_env: String,
    /// The variable holding a key of role `widget`, which the built-in chat page carries.
    pub widget_key_env: String,
    /// The variable holding the secret conversation tokens are signed with. Without it a
    /// random one is made at start, and tokens given out before a restart no longer work.
    pub session_secret_env: String,
    /// Issuers whose JWT bearer tokens are accepted.
    pub jwt: Vec<JwtIssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_key_env: "CONCIERGE_ADMIN_KEY".into(),
            widget_key_env: "CONCIERGE_WIDGET_KEY".into(),
            session_secret_env: "CONCIERGE_SESSION_SECRET".into(),
            jwt: Vec::new(),
        }
    }
}

/// The algorithms a JWT issuer may sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// One trusted issuer: its `iss`, the `aud` tokens must carry, and where its keys are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<JwtAlgorithm>,
    /// HS256: the variable holding the shared secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RS256/ES256: a JWKS document on disk.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// RS256/ES256: a JWKS document fetched at start, again every `jwks_refresh_secs`, and
    /// when a token names a key id it does not have (at most every 30 s).
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
    /// The claim holding the role (`widget`, `operator`, `admin`): a string or a list, the
    /// highest role known wins.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The claim naming the tenant; when set, a token for another tenant is refused.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_refresh() -> u64 {
    3600
}

fn default_role_claim() -> String {
    "role".into()
}

fn default_leeway() -> u64 {
    30
}

impl AuthConfig {
    /// The first problem found, as (key, problem).
    pub fn validate(&self, secret_set: impl Fn(&str) -> bool) -> Result<(), (String, String)> {
        for (i, issuer) in self.jwt.iter().enumerate() {
            let key = |field: &str| format!("auth.jwt[{i}].{field}");
            if issuer.issuer.trim().is_empty() || issuer.audience.trim().is_empty() {
                return Err((key("issuer"), "an issuer needs a non-empty `issuer` and `audience`".into()));
            }
            if issuer.algorithms.is_empty() {
                return Err((key("algorithms"), "is empty; expected some of HS256, RS256, ES256".into()));
            }
            let symmetric = issuer.algorithms.contains(&JwtAlgorithm::HS256);
            let asymmetric = issuer.algorithms.iter().any(|a| *a != JwtAlgorithm::HS256);
            if symmetric && asymmetric {
                return Err((key("algorithms"), "mixes HS256 with RS256/ES256; declare them as two issuers".into()));
            }
            let sources = [issuer.secret_env.is_some(), issuer.jwks_file.is_some(), issuer.jwks_url.is_some()];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err((key("secret_env"), "give exactly one of secret_env, jwks_file, jwks_url".into()));
            }
            match &issuer.secret_env {
                Some(_) if !symmetric => {
                    return Err((key("secret_env"), "is for HS256; RS256/ES256 keys come from a JWKS".into()))
                }
                None if symmetric => return Err((key("secret_env"), "HS256 needs secret_env".into())),
                Some(var) if !secret_set(var) => {
                    return Err((
                        key("secret_env"),
                        format!("names `{var}`, which is not set or shorter than {MIN_SECRET_BYTES} bytes"),
                    ))
                }
                _ => {}
            }
            if let Some(file) = issuer.jwks_file.as_ref().filter(|f| !f.is_file()) {
                return Err((key("jwks_file"), format!("is `{}`, which is not a file", file.display())));
            }
            if let Some(url) = issuer.jwks_url.as_ref() {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err((key("jwks_url"), format!("is `{url}`; expected an http(s) URL")));
                }
            }
            if !(60..=86_400).contains(&issuer.jwks_refresh_secs) {
                return Err((key("jwks_refresh_secs"), "expected 60 to 86400".into()));
            }
            if issuer.leeway_secs > 600 {
                return Err((key("leeway_secs"), "expected 0 to 600".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> JwtIssuerConfig {
        JwtIssuerConfig {
            issuer: "https://id.example".into(),
            audience: "concierge".into(),
            algorithms: vec![JwtAlgorithm::HS256],
            secret_env: Some("SECRET".into()),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: 3600,
            role_claim: "role".into(),
            tenant_claim: None,
            leeway_secs: 30,
        }
    }

    fn problem(change: impl FnOnce(&mut JwtIssuerConfig)) -> Option<String> {
        let mut one = issuer();
        change(&mut one);
        let config = AuthConfig { jwt: vec![one], ..AuthConfig::default() };
        config.validate(|var| var == "SECRET").err().map(|(key, _)| key)
    }

    #[test]
    fn an_issuer_is_refused_with_the_key_at_fault() {
        assert_eq!(problem(|_| {}), None);
        assert_eq!(problem(|i| i.audience = " ".into()).as_deref(), Some("auth.jwt[0].issuer"));
        assert_eq!(problem(|i| i.algorithms.clear()).as_deref(), Some("auth.jwt[0].algorithms"));
        assert_eq!(problem(|i| i.algorithms.push(JwtAlgorithm::RS256)).as_deref(), Some("auth.jwt[0].algorithms"));
        assert_eq!(problem(|i| i.secret_env = Some("UNSET".into())).as_deref(), Some("auth.jwt[0].secret_env"));
        assert_eq!(problem(|i| i.jwks_url = Some("https://x".into())).as_deref(), Some("auth.jwt[0].secret_env"));
        let asymmetric = |i: &mut JwtIssuerConfig| {
            i.algorithms = vec![JwtAlgorithm::ES256];
            i.secret_env = None;
        };
        assert_eq!(problem(|i| asymmetric(i)).as_deref(), Some("auth.jwt[0].secret_env"), "no key source");
        let url = |value: &str| {
            let value = value.to_owned();
            move |i: &mut JwtIssuerConfig| {
                asymmetric(i);
                i.jwks_url = Some(value);
            }
        };
        assert_eq!(problem(url("https://id.example/jwks.json")), None);
        assert_eq!(problem(url("ftp://id.example/jwks.json")).as_deref(), Some("auth.jwt[0].jwks_url"));
        let file = |i: &mut JwtIssuerConfig| {
            asymmetric(i);
            i.jwks_file = Some("/no/such/jwks.json".into());
        };
        assert_eq!(problem(file).as_deref(), Some("auth.jwt[0].jwks_file"));
        assert_eq!(problem(|i| i.jwks_refresh_secs = 5).as_deref(), Some("auth.jwt[0].jwks_refresh_secs"));
        assert_eq!(problem(|i| i.leeway_secs = 601).as_deref(), Some("auth.jwt[0].leeway_secs"));
    }
}
