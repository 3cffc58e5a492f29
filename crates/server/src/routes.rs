//! HTTP handlers: extract, call the service, answer. No logic lives here.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use concierge_core::{ApprovalId, ConversationId};
use serde::Deserialize;
use serde_json::json;

use crate::conversation::{ConversationService, Decision};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathId, QueryParams};
use crate::knowledge::{IngestOutcome, NewDocument};
use crate::search::{self, SearchParams};

pub type AppState = Arc<ConversationService>;

/// Body of `POST /v1/conversations`; every field is optional, and an empty body is fine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// The company's own reference for the customer, e.g. `C-1001`.
    #[serde(default)]
    pub customer_ref: Option<String>,
    /// `api` unless said otherwise.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Body of `POST /v1/conversations/{id}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub content: String,
}

const MAX_REF_CHARS: usize = 128;
const CHANNELS: &[&str] = &["api", "web", "ws", "email", "chat-cli"];

pub async fn create_conversation(
    State(service): State<AppState>,
    JsonBody(body): JsonBody<CreateConversation>,
) -> Result<impl IntoResponse, ApiError> {
    if body.customer_ref.as_ref().is_some_and(|r| r.is_empty() || r.chars().count() > MAX_REF_CHARS) {
        return Err(ApiError::InvalidBody(format!("customer_ref must be 1 to {MAX_REF_CHARS} characters")));
    }
    let channel = body.channel.as_deref().unwrap_or("api");
    if !CHANNELS.contains(&channel) {
        return Err(ApiError::InvalidBody(format!("channel must be one of: {}", CHANNELS.join(", "))));
    }
    let conversation = service.create(body.customer_ref, channel).await?;
    Ok((StatusCode::CREATED, Json(conversation)))
}

/// The exchange as JSON; or, when the client accepts `text/event-stream`, the turn's
/// events as they happen (server-sent events, kept alive while the turn works).
pub async fn post_message(
    State(service): State<AppState>,
    PathId(id): PathId<ConversationId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostMessage>,
) -> Result<Response, ApiError> {
    let wants_stream = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/event-stream")));
    if !wants_stream {
        return Ok(Json(service.post_message(id, &body.content).await?).into_response());
    }
    let events = service.post_message_streamed(id, &body.content).await?;
    let stream = futures::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        let sse = Event::default().event(event.kind).json_data(event.data).unwrap_or_default();
        Some((Ok::<_, Infallible>(sse), events))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

pub async fn get_conversation(
    State(service): State<AppState>,
    PathId(id): PathId<ConversationId>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(service.transcript(id).await?))
}

pub async fn list_approvals(State(service): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({ "approvals": service.pending_approvals().await? })))
}

pub async fn decide_approval(
    State(service): State<AppState>,
    PathId(id): PathId<ApprovalId>,
    JsonBody(body): JsonBody<Decision>,
) -> Result<impl IntoResponse, ApiError> {
    if body.by.trim().is_empty() || body.by.chars().count() > MAX_REF_CHARS {
        return Err(ApiError::InvalidBody(format!("by must name the approver in 1 to {MAX_REF_CHARS} characters")));
    }
    Ok(Json(service.decide_approval(id, body).await?))
}

pub async fn put_document(
    State(service): State<AppState>,
    JsonBody(body): JsonBody<NewDocument>,
) -> Result<impl IntoResponse, ApiError> {
    let (outcome, document) = service.put_document(body).await?;
    let status = if outcome == IngestOutcome::Added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "status": outcome, "document": document }))))
}

pub async fn list_documents(State(service): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({ "documents": service.documents().await? })))
}

pub async fn get_document(
    State(service): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(service.document(&id).await?))
}

pub async fn delete_document(
    State(service): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    service.delete_document(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn search(
    State(service): State<AppState>,
    QueryParams(params): QueryParams<SearchParams>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(search::run(&service, params).await?))
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Ready when the store answers.
pub async fn readyz(State(service): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = service.store();
    store.ping().await?;
    Ok(Json(json!({ "status": "ready", "store": store.backend() })))
}
