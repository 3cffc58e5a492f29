//! Every error the API can answer with, and the one place where each is given its HTTP
//! status and its stable machine-readable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use concierge_core::{ParseIdError, TextError};
use concierge_store::StoreError;
use serde_json::json;

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
    #[error("the store is unavailable; please retry")]
    StoreUnavailable(String),
    #[error("an internal error occurred; it has been logged")]
    Internal(String),
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
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // The details of server-side failures go to the log, never to the client.
        match &self {
            ApiError::Internal(detail) | ApiError::StoreUnavailable(detail) => {
                tracing::error!(code, detail = %detail, "request failed");
            }
            _ => tracing::debug!(code, "request refused"),
        }
        (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response()
    }
}
