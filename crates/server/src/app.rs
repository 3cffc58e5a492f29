//! The router: routes, limits, deadlines, request ids, and JSON answers for everything that
//! goes wrong before a handler runs (unknown route, wrong method, panic).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::routes::{self, AppState};
use crate::{auth, openai, web, ws};

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// The body limit of `POST /v1/documents`.
    pub max_document_bytes: usize,
    pub request_timeout: Duration,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the whole HTTP application.
pub fn router(state: AppState, limits: Limits) -> Router {
    let gate = Arc::new(auth::Gatekeeper { auth: Arc::clone(&state.auth), limits: Arc::clone(&state.rate_limits) });
    // Documents may be larger than any other body.
    let documents = Router::new()
        .route("/v1/documents", post(routes::put_document).get(routes::list_documents))
        .layer(DefaultBodyLimit::max(limits.max_document_bytes))
        .layer(axum::Extension(BodyLimit(limits.max_document_bytes)));
    let api = Router::new()
        .route("/", get(web::chat_page))
        .route("/console", get(web::console_page))
        .route("/web/{name}", get(web::asset))
        .route("/v1/conversations", post(routes::create_conversation).get(routes::list_conversations))
        .route("/v1/conversations/{id}", get(routes::get_conversation))
        .route("/v1/conversations/{id}/events", get(routes::follow_conversation))
        .route("/v1/conversations/{id}/messages", post(routes::post_message))
        .merge(documents)
        .route("/v1/documents/{*id}", get(routes::get_document).delete(routes::delete_document))
        .route("/v1/search", get(routes::search))
        .route("/v1/approvals", get(routes::list_approvals))
        .route("/v1/approvals/{id}", post(routes::decide_approval))
        .route("/v1/tickets", get(routes::list_tickets))
        .route("/v1/feedback", post(routes::post_feedback).get(routes::list_feedback))
        .route("/v1/stats", get(routes::stats))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/jobs", post(routes::submit_job))
        .route("/v1/jobs/{id}", get(routes::get_job))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/readyz", get(routes::readyz))
        .route("/v1/keys", post(routes::create_key).get(routes::list_keys))
        .route("/v1/keys/{prefix}", axum::routing::delete(routes::revoke_key))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", crate::openapi::spec()))
        // Every route above, and only those: an unknown path is a 404 for anyone.
        .route_layer(middleware::from_fn_with_state(gate, auth::guard))
        // Outside the guard, so that refused requests are counted too.
        .route_layer(middleware::from_fn(crate::telemetry::track))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let deadline = limits.request_timeout;
    api.layer(middleware::from_fn(move |req: Request, next: Next| enforce_deadline(deadline, req, next)))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::Extension(BodyLimit(limits.max_body_bytes)))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("handler panicked".into()).into_response()))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // Method, path and request id only: bodies and query strings may carry PII.
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn enforce_deadline(deadline: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::DeadlineExceeded { secs: deadline.as_secs() }.into_response(),
    }
}

async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound { method: method.to_string(), path: uri.path().chars().take(200).collect() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
