//! HTTP handlers: extract, call the service, answer. No logic lives here.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concierge_core::{ApiKeyRecord, ApiRole, Approval, Conversation, Feedback, Ticket};
use concierge_core::{ApprovalId, ConversationId, JobId, MessageId, TicketStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authenticator, Caller};
#[allow(unused_imports)]
use crate::conversation::{ConversationService, Decided, Decision, Exchange, Transcript, MAX_REF_CHARS};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathId, QueryParams};
use crate::gateway::Gateway;
use crate::health;
#[allow(unused_imports)]
use crate::jobs::{JobService, JobView, NewJob};
use crate::knowledge::{DocumentSummary, IngestOutcome, NewDocument};
use crate::ratelimit::RateLimits;
use crate::search::{self, SearchParams};
#[allow(unused_imports)]
use crate::stats::StatsReport;
use crate::telemetry;
use crate::web::WebAssets;

/// Everything the handlers reach; each takes the part it needs.
#[derive(Clone)]
pub struct AppState {
    pub conversations: Arc<ConversationService>,
    pub jobs: Arc<JobService>,
    pub web: Arc<WebAssets>,
    pub gateway: Arc<Gateway>,
    pub auth: Arc<Authenticator>,
    pub rate_limits: Arc<RateLimits>,
    /// What `/metrics` reads at each scrape.
    pub telemetry: Arc<telemetry::Sources>,
}

impl FromRef<AppState> for Arc<telemetry::Sources> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.telemetry)
    }
}

type Service = Arc<ConversationService>;

impl FromRef<AppState> for Arc<ConversationService> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.conversations)
    }
}

impl FromRef<AppState> for Arc<JobService> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.jobs)
    }
}

impl FromRef<AppState> for Arc<Gateway> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.gateway)
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.auth)
    }
}

impl FromRef<AppState> for Arc<RateLimits> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.rate_limits)
    }
}

impl FromRef<AppState> for Arc<WebAssets> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.web)
    }
}

/// Body of `POST /v1/conversations`; every field is optional, and an empty body is fine.
#[derive(Debug, Default, Deserialize, ToSchema)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub content: String,
}

const CHANNELS: &[&str] = &["api", "web", "ws", "email", "chat-cli"];

#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body(content = CreateConversation, description = "optional"),
    responses((status = 201, body = OpenedConversation), (status = 422, description = "invalid body", body = ErrorBody)))]
pub async fn create_conversation(
    State(service): State<Service>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateConversation>,
) -> Result<impl IntoResponse, ApiError> {
    let channel = body.channel.as_deref().unwrap_or("api");
    if !CHANNELS.contains(&channel) {
        return Err(ApiError::InvalidBody(format!("channel must be one of: {}", CHANNELS.join(", "))));
    }
    let conversation = service.create(body.customer_ref, channel).await?;
    let access_token = caller.token_for(conversation.id);
    Ok((StatusCode::CREATED, Json(OpenedConversation { conversation, access_token })))
}

/// A conversation just opened, with the token that lets a widget key reach it again.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenedConversation {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// Sent back as `X-Conversation-Token` by a widget (the public chat) on every later
    /// request about this conversation; operators and admins do not need it.
    pub access_token: String,
}

/// The exchange as JSON; or, when the client accepts `text/event-stream`, the turn's
/// events as they happen (server-sent events, kept alive while the turn works).
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "conversations", request_body = PostMessage,
    params(("id" = String, Path, description = "the conversation")),
    responses((status = 200, description = "the message and its reply; with `Accept: text/event-stream`, the turn's events (meta, tool_started, tool_finished, approval_required, escalated, token, citation, done, error)", body = Exchange,
        content_type = "application/json"),
        (status = 404, body = ErrorBody), (status = 422, description = "invalid body", body = ErrorBody)))]
pub async fn post_message(
    State(service): State<Service>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId<ConversationId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostMessage>,
) -> Result<Response, ApiError> {
    caller.reach(id)?;
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

/// Every message stored in the conversation from now on, as server-sent `message` events;
/// `lagged` says how many a client too slow to keep up missed (the transcript has them).
#[utoipa::path(get, path = "/v1/conversations/{id}/events", tag = "conversations",
    params(("id" = String, Path, description = "the conversation")),
    responses((status = 200, description = "server-sent `message` events, each a stored Message; `lagged` when some were missed", content_type = "text/event-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn follow_conversation(
    State(service): State<Service>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId<ConversationId>,
) -> Result<Response, ApiError> {
    caller.reach(id)?;
    let follower = service.follow(id).await?;
    let stream = futures::stream::unfold(follower, |mut follower| async move {
        use tokio::sync::broadcast::error::RecvError;
        let event = match follower.receiver.recv().await {
            Ok(message) => Event::default().event("message").json_data(&*message).unwrap_or_default(),
            Err(RecvError::Lagged(missed)) => {
                Event::default().event("lagged").data(json!({ "missed": missed }).to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), follower))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "the conversation")),
    responses((status = 200, body = Transcript), (status = 404, body = ErrorBody)))]
pub async fn get_conversation(
    State(service): State<Service>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId<ConversationId>,
) -> Result<impl IntoResponse, ApiError> {
    caller.reach(id)?;
    Ok(Json(service.transcript(id).await?))
}

#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", responses((status = 200, body = Approvals)))]
pub async fn list_approvals(State(service): State<Service>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Approvals { approvals: service.pending_approvals().await? }))
}

#[utoipa::path(post, path = "/v1/approvals/{id}", tag = "approvals", request_body = Decision,
    params(("id" = String, Path, description = "the approval")),
    responses((status = 200, body = Decided), (status = 404, body = ErrorBody), (status = 409, description = "already decided or expired", body = ErrorBody), (status = 422, description = "invalid body", body = ErrorBody)))]
pub async fn decide_approval(
    State(service): State<Service>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId<ApprovalId>,
    JsonBody(body): JsonBody<Decision>,
) -> Result<impl IntoResponse, ApiError> {
    let subject = &caller.principal.subject;
    let approver = match body.by.as_deref().map(str::trim) {
        None => subject.clone(),
        Some(name) if !name.is_empty() && name.chars().count() <= MAX_REF_CHARS => format!("{name} [{subject}]"),
        Some(_) => {
            return Err(ApiError::InvalidBody(format!("by must name the approver in 1 to {MAX_REF_CHARS} characters")))
        }
    };
    Ok(Json(service.decide_approval(id, body, &approver).await?))
}

#[utoipa::path(post, path = "/v1/documents", tag = "knowledge", request_body = NewDocument,
    responses((status = 201, description = "added", body = Ingested), (status = 200, description = "updated or unchanged", body = Ingested),
        (status = 413, body = ErrorBody), (status = 422, description = "invalid body", body = ErrorBody)))]
pub async fn put_document(
    State(service): State<Service>,
    JsonBody(body): JsonBody<NewDocument>,
) -> Result<impl IntoResponse, ApiError> {
    let (outcome, document) = service.put_document(body).await?;
    let status = if outcome == IngestOutcome::Added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Ingested { status: outcome, document })))
}

#[utoipa::path(get, path = "/v1/documents", tag = "knowledge", responses((status = 200, body = Documents)))]
pub async fn list_documents(State(service): State<Service>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Documents { documents: service.documents().await? }))
}

#[utoipa::path(get, path = "/v1/documents/{id}", tag = "knowledge", params(("id" = String, Path, description = "the company's document id; may hold `/`")),
    responses((status = 200, body = DocumentSummary), (status = 404, body = ErrorBody)))]
pub async fn get_document(
    State(service): State<Service>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(service.document(&id).await?))
}

#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "knowledge", params(("id" = String, Path, description = "the company's document id")),
    responses((status = 204, description = "removed from the store and every index"), (status = 404, body = ErrorBody)))]
pub async fn delete_document(
    State(service): State<Service>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    service.delete_document(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/search", tag = "knowledge", params(SearchParams),
    responses((status = 200, description = "ranked chunks with each stage's scores, timings and the numbered context", body = serde_json::Value),
        (status = 400, body = ErrorBody)))]
pub async fn search(
    State(service): State<Service>,
    QueryParams(params): QueryParams<SearchParams>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(search::run(&service, params).await?))
}

/// The process's figures in Prometheus's text format (see `telemetry`).
#[utoipa::path(get, path = "/metrics", tag = "console",
    responses((status = 200, description = "Prometheus text exposition format, version 0.0.4", content_type = "text/plain", body = String)))]
pub async fn metrics(State(sources): State<Arc<telemetry::Sources>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], telemetry::render(&sources))
}

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "the process is up", body = serde_json::Value)))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Ready when the store answers; each dependency's state either way (`health`).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "the store answers: `status` is `ready`, or `degraded` when a model's breaker is open or rate limits are kept in this process while Redis does not answer; `store`, `models` (each provider's breaker), `rate_limits` and `jobs` say how each stands", body = serde_json::Value),
    (status = 503, description = "the store does not answer: `status` is `unavailable`, with the same report", body = serde_json::Value)))]
pub async fn readyz(
    State(service): State<Service>,
    State(sources): State<Arc<telemetry::Sources>>,
) -> impl IntoResponse {
    let readiness = health::readiness(service.store().as_ref(), &sources).await;
    let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness))
}

/// Query of the listing routes: `limit` (1 to 200, default 50), for conversations `before`
/// (the last id of the previous page), for tickets `status`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

const MAX_PAGE: u32 = 200;

impl ListParams {
    fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(limit @ 1..=MAX_PAGE) => Ok(limit),
            Some(other) => Err(ApiError::InvalidQuery(format!("limit is {other}; expected 1 to {MAX_PAGE}"))),
        }
    }
}

#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", params(ListParams),
    responses((status = 200, body = Conversations), (status = 400, body = ErrorBody)))]
pub async fn list_conversations(
    State(service): State<Service>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    let before = params.before.as_deref().map(str::parse::<ConversationId>).transpose()?;
    if params.status.is_some() {
        return Err(ApiError::InvalidQuery("conversations are not filtered by status".into()));
    }
    Ok(Json(Conversations { conversations: service.conversations(params.limit()?, before).await? }))
}

#[utoipa::path(get, path = "/v1/tickets", tag = "console", params(ListParams),
    responses((status = 200, body = Tickets), (status = 400, body = ErrorBody)))]
pub async fn list_tickets(
    State(service): State<Service>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    let status =
        params.status.as_deref().map(str::parse::<TicketStatus>).transpose().map_err(ApiError::InvalidQuery)?;
    if params.before.is_some() {
        return Err(ApiError::InvalidQuery("tickets are not paged with before".into()));
    }
    Ok(Json(Tickets { tickets: service.tickets(status, params.limit()?).await? }))
}

/// Body of `POST /v1/feedback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFeedback {
    pub message_id: MessageId,
    /// 1 (thumbs up) or -1 (thumbs down).
    pub rating: i16,
    #[serde(default)]
    pub comment: Option<String>,
}

const MAX_COMMENT_CHARS: usize = 2_000;

#[utoipa::path(post, path = "/v1/feedback", tag = "console", request_body = NewFeedback,
    responses((status = 201, body = Rated), (status = 404, body = ErrorBody), (status = 422, description = "invalid body", body = ErrorBody)))]
pub async fn post_feedback(
    State(service): State<Service>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<NewFeedback>,
) -> Result<impl IntoResponse, ApiError> {
    if body.rating != 1 && body.rating != -1 {
        return Err(ApiError::InvalidBody("rating must be 1 (thumbs up) or -1 (thumbs down)".into()));
    }
    let comment = body.comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if let Some(comment) = &comment {
        concierge_core::MessageText::parse(comment, MAX_COMMENT_CHARS)
            .map_err(|e| ApiError::InvalidBody(format!("comment: {e}")))?;
    }
    let feedback = service.rate(body.message_id, body.rating, comment, |id| caller.reach(id)).await?;
    Ok((StatusCode::CREATED, Json(Rated { feedback })))
}

#[utoipa::path(get, path = "/v1/feedback", tag = "console", params(ListParams),
    responses((status = 200, body = FeedbackList), (status = 400, body = ErrorBody)))]
pub async fn list_feedback(
    State(service): State<Service>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    if params.before.is_some() || params.status.is_some() {
        return Err(ApiError::InvalidQuery("feedback takes only limit".into()));
    }
    Ok(Json(FeedbackList { feedback: service.feedback(params.limit()?).await? }))
}

#[utoipa::path(get, path = "/v1/stats", tag = "console", responses((status = 200, body = StatsReport)))]
pub async fn stats(State(service): State<Service>, State(limits): State<Arc<RateLimits>>) -> impl IntoResponse {
    let mut report = service.stats();
    report.rate_limits = Some(limits.status());
    Json(report)
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = NewJob,
    responses((status = 202, description = "stored and queued; `Location` names it", body = JobView),
        (status = 404, body = ErrorBody), (status = 429, description = "the queue is full; `Retry-After` says when to retry", body = ErrorBody), (status = 422, description = "invalid body", body = ErrorBody)))]
pub async fn submit_job(
    State(jobs): State<Arc<JobService>>,
    JsonBody(body): JsonBody<NewJob>,
) -> Result<impl IntoResponse, ApiError> {
    let job = jobs.submit(body).await?;
    let location = format!("/v1/jobs/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(job)))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "the job")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(jobs): State<Arc<JobService>>,
    PathId(id): PathId<JobId>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(jobs.get(id).await?))
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub role: ApiRole,
    /// What the key is for, e.g. `zendesk bridge`; recorded with every approval it decides.
    pub label: String,
}

/// A stored key as listed: never its secret or hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub prefix: String,
    pub role: ApiRole,
    pub label: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(record: ApiKeyRecord) -> Self {
        Self {
            prefix: record.prefix,
            role: record.role,
            label: record.label,
            created_at: record.created_at,
            revoked_at: record.revoked_at,
        }
    }
}

/// A key just made. `key` is shown this once; only its hash is kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub record: KeyView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Keys {
    pub keys: Vec<KeyView>,
}

const MAX_LABEL_CHARS: usize = 100;

#[utoipa::path(post, path = "/v1/keys", tag = "auth", request_body = NewKey,
    responses((status = 201, description = "the key, shown once", body = CreatedKey), (status = 422, description = "invalid body", body = ErrorBody)))]
pub async fn create_key(
    State(auth): State<Arc<Authenticator>>,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<impl IntoResponse, ApiError> {
    let label = body.label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(ApiError::InvalidBody(format!("label must be 1 to {MAX_LABEL_CHARS} printable characters")));
    }
    let (key, record) = auth.create_key(body.role, label).await?;
    tracing::info!(prefix = %record.prefix, role = %record.role, "API key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { key, record: record.into() })))
}

#[utoipa::path(get, path = "/v1/keys", tag = "auth", responses((status = 200, body = Keys)))]
pub async fn list_keys(State(auth): State<Arc<Authenticator>>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Keys { keys: auth.keys().await?.into_iter().map(KeyView::from).collect() }))
}

#[utoipa::path(delete, path = "/v1/keys/{prefix}", tag = "auth", params(("prefix" = String, Path, description = "the key's public prefix")),
    responses((status = 200, description = "revoked (revoking again keeps the first time)", body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(auth): State<Arc<Authenticator>>,
    axum::extract::Path(prefix): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = auth.revoke(&prefix).await?;
    tracing::info!(prefix = %record.prefix, "API key revoked");
    Ok(Json(KeyView::from(record)))
}

/// Every error: a stable code and a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `message_empty`, `queue_full`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Approvals {
    pub approvals: Vec<Approval>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Conversations {
    pub conversations: Vec<Conversation>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tickets {
    pub tickets: Vec<Ticket>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rated {
    pub feedback: Feedback,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackList {
    pub feedback: Vec<Feedback>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Documents {
    pub documents: Vec<DocumentSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ingested {
    pub status: IngestOutcome,
    pub document: DocumentSummary,
}
