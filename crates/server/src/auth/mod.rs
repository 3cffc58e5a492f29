//! Who is calling: API keys (stored, Argon2id-hashed; or read from the environment), JWT
//! bearer tokens of configured issuers, and conversation tokens, which let a widget key
//! reach only the conversations it opened.
//!
//! Every request passes [`guard`], which looks the route up in [`policy::ROUTES`], refuses
//! what the caller may not do, and hands the handler a [`Caller`].

pub mod jwt;
pub mod keys;
pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use concierge_core::{ApiKeyRecord, ApiRole, ConversationId, TenantId};
use concierge_store::Store;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::ApiError;
use crate::ratelimit::{RateLimits, Scope};
use policy::Access;

/// A verified stored key is trusted by its digest for this long before its record is read
/// again (a key revoked by another process stops working within this time; one revoked
/// here stops at once).
const RECHECK: Duration = Duration::from_secs(30);
/// Verified keys remembered at most; beyond, the memory starts over.
const MAX_REMEMBERED: usize = 10_000;
/// Argon2 hashes computed at once: each takes ~19 MiB and tens of milliseconds of a core.
const HASHING_AT_ONCE: usize = 2;
/// The header a widget sends a conversation's token in.
pub const CONVERSATION_TOKEN: &str = "x-conversation-token";
/// The WebSocket subprotocol the server speaks, and the prefix of the one carrying a key.
pub const WS_PROTOCOL: &str = "concierge.v1";
pub const WS_BEARER: &str = "bearer.";

/// Why a request was refused before its handler ran.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("this route needs a credential: `Authorization: Bearer <key or token>` or `X-Api-Key: <key>`")]
    Unauthenticated,
    #[error("the credential is not valid")]
    InvalidCredentials,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token is not valid yet")]
    TokenNotYetValid,
    #[error("{0}")]
    Forbidden(String),
    #[error("the credential belongs to another tenant")]
    WrongTenant,
    #[error("this conversation needs its token (`X-Conversation-Token`, given when it was opened)")]
    ConversationForbidden,
}

impl AuthError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AuthError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            AuthError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            AuthError::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            AuthError::TokenNotYetValid => (StatusCode::UNAUTHORIZED, "token_not_yet_valid"),
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AuthError::WrongTenant => (StatusCode::FORBIDDEN, "wrong_tenant"),
            AuthError::ConversationForbidden => (StatusCode::FORBIDDEN, "conversation_forbidden"),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        tracing::debug!(code, "request refused by auth");
        let mut response =
            (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self {
                AuthError::Unauthenticated => "Bearer realm=\"concierge\"".to_owned(),
                _ => format!("Bearer realm=\"concierge\", error=\"invalid_token\", error_description=\"{self}\""),
            };
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// Who a credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: ApiRole,
    /// What the audit log records: `key:<label> (<prefix>)`, `env:admin`, `jwt:<iss>:<sub>`.
    pub subject: String,
}

/// The caller of one request, as the handlers see it.
#[derive(Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The `X-Conversation-Token` the request carried.
    pub conversation_token: Option<String>,
    tokens: Arc<ConversationTokens>,
}

impl Caller {
    /// Whether this caller may read and write the conversation `id`; `token` is the
    /// conversation token it presents (the request's own when `None`).
    pub fn may_reach(&self, id: ConversationId, token: Option<&str>) -> bool {
        policy::allows(self.principal.role, ApiRole::Operator)
            || token.or(self.conversation_token.as_deref()).is_some_and(|t| self.tokens.verify(id, t))
    }

    pub fn reach(&self, id: ConversationId) -> Result<(), ApiError> {
        if self.may_reach(id, None) {
            Ok(())
        } else {
            Err(ApiError::Auth(AuthError::ConversationForbidden))
        }
    }

    /// The token that lets a widget reach `id` again.
    pub fn token_for(&self, id: ConversationId) -> String {
        self.tokens.issue(id)
    }
}

/// HMAC-SHA256 of the conversation id under the session secret.
struct ConversationTokens {
    secret: SecretString,
}

impl ConversationTokens {
    fn mac(&self, id: ConversationId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes a key of any size");
        mac.update(b"conversation:");
        mac.update(id.to_string().as_bytes());
        mac
    }

    fn issue(&self, id: ConversationId) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(id).finalize().into_bytes())
    }

    fn verify(&self, id: ConversationId, token: &str) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        self.mac(id).verify_slice(&bytes).is_ok()
    }
}

struct Remembered {
    principal: Principal,
    prefix: String,
    checked: Instant,
}

/// Checks credentials. One per process, shared by every request.
pub struct Authenticator {
    store: Arc<dyn Store>,
    tenant: TenantId,
    /// Keys of the environment, by the SHA-256 of the key.
    env_keys: HashMap<[u8; 32], Principal>,
    issuers: Vec<jwt::Issuer>,
    http: reqwest::Client,
    tokens: Arc<ConversationTokens>,
    verified: Mutex<HashMap<[u8; 32], Remembered>>,
    hashing: Semaphore,
}

/// Why auth could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("{0}")]
    Issuer(#[from] jwt::IssuerError),
    #[error("{0}")]
    Random(String),
}

fn digest(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

impl Authenticator {
    pub async fn new(config: &Config, store: Arc<dyn Store>) -> Result<Self, AuthSetupError> {
        let tenant = config.tenant.id.clone();
        let secrets = &config.secrets;
        let mut env_keys = HashMap::new();
        for (key, role, name) in
            [(&secrets.widget_key, ApiRole::Widget, "env:widget"), (&secrets.admin_key, ApiRole::Admin, "env:admin")]
        {
            if let Some(key) = key {
                let principal = Principal { tenant: tenant.clone(), role, subject: name.to_owned() };
                env_keys.insert(digest(key.expose_secret()), principal);
            }
        }
        let http = reqwest::Client::builder().build().map_err(|e| AuthSetupError::Random(e.to_string()))?;
        let mut issuers = Vec::new();
        for issuer in &config.auth.jwt {
            issuers.push(jwt::Issuer::load(issuer, secrets, &http).await?);
        }
        let secret = match &secrets.session_secret {
            Some(secret) => secret.clone(),
            None => SecretString::from(fresh_key().map_err(AuthSetupError::Random)?),
        };
        if env_keys.is_empty() && issuers.is_empty() {
            tracing::info!(
                "no key in {} or {} and no JWT issuer: only stored keys (`concierge keys create`) are accepted",
                config.auth.admin_key_env,
                config.auth.widget_key_env
            );
        }
        Ok(Self {
            store,
            tenant,
            env_keys,
            issuers,
            http,
            tokens: Arc::new(ConversationTokens { secret }),
            verified: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(HASHING_AT_ONCE),
        })
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Who `credential` speaks for, for this process's tenant.
    pub async fn authenticate(&self, credential: &str) -> Result<Principal, AuthError> {
        let credential = credential.trim();
        if credential.is_empty() {
            return Err(AuthError::Unauthenticated);
        }
        let digest = digest(credential);
        if let Some(principal) = self.env_keys.get(&digest) {
            return Ok(principal.clone());
        }
        let principal = if let Some((prefix, secret)) = keys::split(credential) {
            self.stored_key(digest, prefix, secret).await?
        } else if credential.split('.').count() == 3 {
            let issuer = jwt::issuer_of(credential).ok_or(AuthError::InvalidCredentials)?;
            let issuer = self.issuers.iter().find(|i| i.name() == issuer).ok_or(AuthError::InvalidCredentials)?;
            issuer.check(credential, &self.http, &self.tenant).await?
        } else {
            return Err(AuthError::InvalidCredentials);
        };
        if principal.tenant != self.tenant {
            return Err(AuthError::WrongTenant);
        }
        Ok(principal)
    }

    async fn stored_key(&self, digest: [u8; 32], prefix: &str, secret: &str) -> Result<Principal, AuthError> {
        let remembered = {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            verified.get(&digest).map(|r| (r.principal.clone(), r.checked.elapsed() < RECHECK))
        };
        if let Some((principal, true)) = remembered {
            return Ok(principal);
        }
        let record = self.record(prefix).await?;
        let principal = match remembered {
            // The digest matched a key verified before: only revocation is checked again.
            Some((principal, _)) => principal,
            None => {
                let _permit = self.hashing.acquire().await.map_err(|_| AuthError::InvalidCredentials)?;
                let (secret, hash) = (secret.to_owned(), record.secret_hash.clone());
                let matches = tokio::task::spawn_blocking(move || keys::verify(&secret, &hash)).await.unwrap_or(false);
                if !matches {
                    return Err(AuthError::InvalidCredentials);
                }
                principal_of(&record)
            }
        };
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        let entry = Remembered { principal: principal.clone(), prefix: record.prefix, checked: Instant::now() };
        verified.insert(digest, entry);
        Ok(principal)
    }

    /// The live record of `prefix`; revoked or unknown is refused, and forgotten.
    async fn record(&self, prefix: &str) -> Result<ApiKeyRecord, AuthError> {
        let record = match self.store.api_key(prefix).await {
            Ok(Some(record)) if record.revoked_at.is_none() => record,
            Ok(_) => {
                self.forget(prefix);
                return Err(AuthError::InvalidCredentials);
            }
            Err(error) => {
                // A store that cannot answer must not let anyone in.
                tracing::warn!(%error, "could not read an API key");
                return Err(AuthError::InvalidCredentials);
            }
        };
        Ok(record)
    }

    fn forget(&self, prefix: &str) {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, r| r.prefix != prefix);
    }

    /// Makes a key for this tenant and stores its hash; the key itself is returned once.
    pub async fn create_key(&self, role: ApiRole, label: &str) -> Result<(String, ApiKeyRecord), ApiError> {
        let _permit = self.hashing.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
        let minted = tokio::task::spawn_blocking(keys::mint)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::Internal)?;
        let record = ApiKeyRecord {
            prefix: minted.prefix,
            tenant_id: self.tenant.clone(),
            role,
            secret_hash: minted.secret_hash,
            label: label.to_owned(),
            created_at: concierge_core::now(),
            revoked_at: None,
        };
        self.store.insert_api_key(&record).await?;
        Ok((minted.key, record))
    }

    /// This tenant's stored keys.
    pub async fn keys(&self) -> Result<Vec<ApiKeyRecord>, ApiError> {
        Ok(self.store.api_keys(&self.tenant).await?)
    }

    /// Revokes a key of this tenant; it stops working in this process at once.
    pub async fn revoke(&self, prefix: &str) -> Result<ApiKeyRecord, ApiError> {
        let not_found = || ApiError::not_found(format!("key {}", prefix.chars().take(40).collect::<String>()));
        let record = self.store.api_key(prefix).await?.filter(|r| r.tenant_id == self.tenant).ok_or_else(not_found)?;
        self.store.revoke_api_key(prefix, concierge_core::now()).await?;
        self.forget(prefix);
        Ok(self.store.api_key(prefix).await?.unwrap_or(record))
    }

    /// A caller of `principal`, holding `conversation_token`.
    pub fn caller(&self, principal: Principal, conversation_token: Option<String>) -> Caller {
        Caller { principal, conversation_token, tokens: Arc::clone(&self.tokens) }
    }
}

/// A new random key for the environment (`CONCIERGE_ADMIN_KEY`, `CONCIERGE_WIDGET_KEY`):
/// 32 bytes from the operating system, base64url.
pub fn fresh_key() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn principal_of(record: &ApiKeyRecord) -> Principal {
    let label: String = record.label.chars().take(80).collect();
    Principal {
        tenant: record.tenant_id.clone(),
        role: record.role,
        subject: format!("key:{label} ({})", record.prefix),
    }
}

/// The credential a request carries: `Authorization: Bearer`, `X-Api-Key`, or (for a
/// WebSocket handshake, where browsers cannot set headers) a `bearer.<key>` subprotocol.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(value) = text("authorization") {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        return Some(if scheme.eq_ignore_ascii_case("bearer") { rest.trim().to_owned() } else { String::new() });
    }
    if let Some(key) = text("x-api-key") {
        return Some(key.trim().to_owned());
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WS_BEARER).map(str::to_owned))
}

/// What every request passes: the credentials and the rate limits.
pub struct Gatekeeper {
    pub auth: Arc<Authenticator>,
    pub limits: Arc<RateLimits>,
}

/// The client's address: the connection's peer, or the first `X-Forwarded-For` entry when
/// a proxy in front is trusted to set it.
fn client_address(request: &Request, trust_forwarded_for: bool) -> Option<String> {
    if trust_forwarded_for {
        let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        if let Some(first) = forwarded.and_then(|v| v.split(',').next()).map(str::trim).filter(|v| !v.is_empty()) {
            return Some(first.chars().take(64).collect());
        }
    }
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?;
    Some(peer.0.ip().to_string())
}

/// The end user a request is for: the conversation a widget talks in, or the
/// `X-End-User` an operator's integration names on behalf of its customer.
fn end_user(request: &Request, principal: &Principal, conversation: Option<ConversationId>) -> Option<String> {
    if policy::allows(principal.role, ApiRole::Operator) {
        let named = request.headers().get("x-end-user").and_then(|v| v.to_str().ok()).map(str::trim);
        return named.filter(|v| !v.is_empty()).map(|v| format!("named:{}", v.chars().take(200).collect::<String>()));
    }
    conversation.map(|id| format!("conversation:{id}"))
}

/// The middleware of every route: the route's access from the table, the address's rate
/// limit (before any credential is checked, so guessing keys is limited too), the
/// credential checked against the access, the key's and the end user's limits, and the
/// [`Caller`] put where the handler finds it.
pub async fn guard(State(gate): State<Arc<Gatekeeper>>, mut request: Request, next: Next) -> Response {
    let (auth, limits) = (&gate.auth, &gate.limits);
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let access = route.as_deref().and_then(|route| policy::access(request.method().as_str(), route));
    let Some(access) = access else {
        // Closed unless declared: a route without a line in the table serves no one.
        tracing::error!(route = ?route, method = %request.method(), "a route has no access rule");
        return AuthError::Forbidden("this route is not open to any caller".into()).into_response();
    };
    let needed = match access {
        Access::Public => return next.run(request).await,
        Access::Role(role) => role,
        Access::Conversation => ApiRole::Widget,
    };
    if let Some(address) = client_address(&request, limits.trust_forwarded_for()) {
        if let Err(limited) = limits.check(Scope::Ip, &address).await {
            return limited.into_response();
        }
    }
    let Some(credential) = credential(request.headers()) else {
        return AuthError::Unauthenticated.into_response();
    };
    let principal = match auth.authenticate(&credential).await {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if !policy::allows(principal.role, needed) {
        let refused = format!("this route needs the {needed} role; the credential has {}", principal.role);
        return AuthError::Forbidden(refused).into_response();
    }
    if let Err(limited) = limits.check(Scope::Key, &principal.subject).await {
        return limited.into_response();
    }
    // The conversation of the route's `{id}`; an id that does not parse is left to the
    // handler, which refuses it as such.
    let conversation = match access {
        Access::Conversation => path_conversation(&mut request).await,
        _ => None,
    };
    if let Some(user) = end_user(&request, &principal, conversation) {
        if let Err(limited) = limits.check(Scope::User, &user).await {
            return limited.into_response();
        }
    }
    let token = request.headers().get(CONVERSATION_TOKEN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let caller = auth.caller(principal, token);
    if conversation.is_some_and(|id| !caller.may_reach(id, None)) {
        // Refused before the body is read: a conversation it may not reach tells a widget
        // nothing about what it sent.
        return AuthError::ConversationForbidden.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The conversation the route's `{id}` names, if it parses as one.
async fn path_conversation(request: &mut Request) -> Option<ConversationId> {
    use axum::RequestExt;
    let params = request.extract_parts::<axum::extract::RawPathParams>().await.ok()?;
    params.iter().find(|(name, _)| *name == "id").and_then(|(_, value)| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ConversationTokens {
        ConversationTokens { secret: SecretString::from("s".repeat(32)) }
    }

    #[test]
    fn a_conversation_token_opens_its_conversation_only() {
        let tokens = tokens();
        let (one, two) = (ConversationId::new(), ConversationId::new());
        let token = tokens.issue(one);
        assert!(tokens.verify(one, &token));
        assert!(!tokens.verify(two, &token));
        assert!(!tokens.verify(one, "garbage!"));
        assert!(!tokens.verify(one, ""));
        let other = ConversationTokens { secret: SecretString::from("t".repeat(32)) };
        assert!(!other.verify(one, &token));
    }

    #[test]
    fn the_credential_is_found_where_clients_put_it() {
        let with = |name: &'static str, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
            credential(&headers)
        };
        assert_eq!(with("authorization", "Bearer abc"), Some("abc".into()));
        assert_eq!(with("authorization", "bearer  abc "), Some("abc".into()));
        assert_eq!(with("authorization", "Basic abc"), Some(String::new()));
        assert_eq!(with("x-api-key", "abc"), Some("abc".into()));
        assert_eq!(with("sec-websocket-protocol", "concierge.v1, bearer.abc"), Some("abc".into()));
        assert_eq!(with("sec-websocket-protocol", "concierge.v1"), None);
        assert_eq!(credential(&HeaderMap::new()), None);
    }
}
