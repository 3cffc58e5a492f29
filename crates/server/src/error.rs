//! Every error the API can answer with, and the one place where each is given its HTTP
//! status and its stable machine-readable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use concierge_core::{ParseIdError, TextError};
use concierge_retrieval::EmbedError;
use concierge_store::StoreError;
use serde_json::json;

use crate::knowledge::KnowledgeError;

/// An error answered as `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body does not match the expected shape: {0}")]
    InvalidBody(String),
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the request body is not valid UTF-8")]
    InvalidUtf8,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    InvalidMessage(#[from] TextError),
    #[error("{0}")]
    InvalidId(#[from] ParseIdError),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the request took longer than its deadline of {secs} s")]
    DeadlineExceeded { secs: u64 },
    #[error("{0}")]
    InvalidDocument(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("too many requests are waiting for the embedding model; retry in a moment")]
    Overloaded,
    #[error("no model `{0}` here; GET /v1/models lists the models")]
    UnknownModel(String),
    #[error("{0}")]
    UnsupportedParameter(String),
    #[error("the job queue is full; retry in {retry_after_secs} s")]
    QueueFull { retry_after_secs: u64 },
    #[error("the model refused the request: {0}")]
    UpstreamRejected(String),
    #[error("{0}")]
    ContextTooLong(String),
    #[error("the model is rate limiting; retry in {retry_after_secs} s")]
    UpstreamRateLimited { retry_after_secs: u64 },
    #[error("the model is not being called for now (its circuit breaker is open); retry in a moment")]
    UpstreamUnavailable(String),
    #[error("the model did not answer in time")]
    UpstreamTimeout(String),
    #[error("the model failed to answer; please retry")]
    UpstreamFailed(String),
    #[error("the embedding model is unavailable; please retry")]
    EmbedderUnavailable(String),
    #[error("the store is unavailable; please retry")]
    StoreUnavailable(String),
    #[error("an internal error occurred; it has been logged")]
    Internal(String),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("too many requests for this {scope}; retry in {retry_after_secs} s")]
    RateLimited { scope: &'static str, retry_after_secs: u64 },
}

impl ApiError {
    /// The HTTP status and the stable code of each error. Clients may rely on the codes.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            InvalidUtf8 => (StatusCode::BAD_REQUEST, "invalid_utf8"),
            PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            InvalidMessage(TextError::Empty) => (StatusCode::UNPROCESSABLE_ENTITY, "message_empty"),
            InvalidMessage(TextError::TooLong { .. }) => (StatusCode::UNPROCESSABLE_ENTITY, "message_too_long"),
            InvalidMessage(TextError::ControlCharacters) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "message_invalid_characters")
            }
            InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            RouteNotFound { .. } => (StatusCode::NOT_FOUND, "route_not_found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            DeadlineExceeded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "deadline_exceeded"),
            StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            InvalidDocument(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            UnknownModel(_) => (StatusCode::NOT_FOUND, "model_not_found"),
            UnsupportedParameter(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_parameter"),
            EmbedderUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "embedder_unavailable"),
            UpstreamRejected(_) => (StatusCode::BAD_REQUEST, "upstream_rejected"),
            ContextTooLong(_) => (StatusCode::BAD_REQUEST, "context_length_exceeded"),
            UpstreamRateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited"),
            UpstreamUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
            UpstreamTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            UpstreamFailed(_) => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Auth(error) => error.status_and_code(),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => ApiError::NotFound { what },
            StoreError::Conflict { what } => ApiError::Conflict(what),
            StoreError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<KnowledgeError> for ApiError {
    fn from(error: KnowledgeError) -> Self {
        use concierge_retrieval::KnowledgeError as Index;
        match error {
            KnowledgeError::Store(e) => e.into(),
            KnowledgeError::Article(e) => ApiError::InvalidDocument(e.to_string()),
            KnowledgeError::Invalid(problem) => ApiError::InvalidDocument(problem),
            KnowledgeError::Embed(e) | KnowledgeError::Index(Index::Embed(e)) => embed_error(e),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The embedder's failures: a full queue or a provider's 429 is the client's cue to back off;
/// a provider down or slow is a 503; the rest is ours.
fn embed_error(error: EmbedError) -> ApiError {
    match error {
        EmbedError::Overloaded { .. } | EmbedError::RateLimited { .. } => ApiError::Overloaded,
        EmbedError::Timeout { .. }
        | EmbedError::Connect { .. }
        | EmbedError::Server { .. }
        | EmbedError::Stopped { .. } => ApiError::EmbedderUnavailable(error.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Auth(error) = self {
            return error.into_response();
        }
        let (status, code) = self.status_and_code();
        // The details of server-side failures go to the log, never to the client.
        match &self {
            ApiError::Internal(detail)
            | ApiError::StoreUnavailable(detail)
            | ApiError::EmbedderUnavailable(detail)
            | ApiError::UpstreamFailed(detail)
            | ApiError::UpstreamTimeout(detail)
            | ApiError::UpstreamUnavailable(detail) => {
                tracing::error!(code, detail = %detail, "request failed");
            }
            _ => tracing::debug!(code, "request refused"),
        }
        let mut response =
            (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            let secs = match &self {
                ApiError::QueueFull { retry_after_secs }
                | ApiError::UpstreamRateLimited { retry_after_secs }
                | ApiError::RateLimited { retry_after_secs, .. } => *retry_after_secs,
                _ => 1,
            };
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}
