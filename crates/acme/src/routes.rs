//! The backend's HTTP routes and business rules.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::data::{AcmeData, Refund};
use crate::soap;

/// Refunds above this many cents need a named approver (`approved_by`).
pub const REFUND_APPROVAL_LIMIT_CENTS: i64 = 10_000;

/// The backend's mutable state. One lock guards all of it: the service is a demo with a
/// few dozen records, and one lock makes every business rule trivially atomic.
#[derive(Clone)]
pub struct AcmeState {
    inner: Arc<Mutex<Inner>>,
}

struct Remembered {
    request: String,
    status: StatusCode,
    body: Value,
}

struct Inner {
    data: AcmeData,
    tickets: Vec<Value>,
    refunds: Vec<Value>,
    /// (endpoint, `Idempotency-Key`) → the request it came with and the first answer.
    replies: HashMap<(&'static str, String), Remembered>,
}

impl AcmeState {
    pub fn new(data: AcmeData) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                data,
                tickets: Vec::new(),
                refunds: Vec::new(),
                replies: HashMap::new(),
            })),
        }
    }
}

/// The backend's routes.
pub fn router(state: AcmeState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/customers/{id}", get(get_customer))
        .route("/customers/{id}/orders", get(customer_orders))
        .route("/refunds", post(create_refund))
        .route("/tickets", post(create_ticket))
        .route("/soap/loyalty", post(soap::loyalty))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route") })
        .with_state(state)
}

/// An error answer: `{"error": {"code", "message"}}`.
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), "invalid_body", rejection.body_text())
    }
}

impl AcmeState {
    pub(crate) async fn with_data<T>(&self, f: impl FnOnce(&AcmeData) -> T) -> T {
        f(&self.inner.lock().await.data)
    }
}

async fn get_order(State(state): State<AcmeState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let inner = state.inner.lock().await;
    let order = inner.data.orders.get(&id).ok_or_else(|| order_not_found(&id))?;
    Ok(Json(order_view(&inner.data, order)))
}

async fn get_customer(State(state): State<AcmeState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let inner = state.inner.lock().await;
    let customer = inner.data.customers.get(&id).ok_or_else(|| customer_not_found(&id))?;
    Ok(Json(json!(customer)))
}

async fn customer_orders(State(state): State<AcmeState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let inner = state.inner.lock().await;
    if !inner.data.customers.contains_key(&id) {
        return Err(customer_not_found(&id));
    }
    let orders: Vec<Value> =
        inner.data.orders.values().filter(|o| o.customer_id == id).map(|o| order_view(&inner.data, o)).collect();
    Ok(Json(json!({ "customer_id": id, "orders": orders })))
}

/// An order as the API shows it: the stored record plus product names and what can still be
/// refunded, so a caller needs no second lookup.
fn order_view(data: &AcmeData, order: &crate::data::Order) -> Value {
    let mut view = json!(order);
    let names: Vec<Value> = order
        .items
        .iter()
        .map(|i| json!(data.products.get(&i.sku).map_or(i.sku.as_str(), |p| p.name.as_str())))
        .collect();
    view["product_names"] = Value::Array(names);
    view["refundable_cents"] = json!(refundable_cents(order));
    view
}

fn refundable_cents(order: &crate::data::Order) -> i64 {
    match order.status.as_str() {
        "delivered" | "shipped" | "delayed" | "refunded" => (order.total_cents - order.refunded_cents()).max(0),
        _ => 0,
    }
}

async fn cancel_order(
    State(state): State<AcmeState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut inner = state.inner.lock().await;
    if let Some(reply) = replay(&inner, &headers, "cancel", &id)? {
        return Ok(reply);
    }
    let order = inner.data.orders.get_mut(&id).ok_or_else(|| order_not_found(&id))?;
    if order.status != "processing" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!("order {id} is {} and can only be cancelled while processing", order.status),
        ));
    }
    order.status = "cancelled".into();
    order.shipping.estimated_delivery = None;
    let body = json!({ "order_id": id, "status": "cancelled" });
    Ok(remember(&mut inner, &headers, "cancel", &id, StatusCode::OK, body))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    order_id: String,
    amount_cents: i64,
    reason: String,
    approved_by: Option<String>,
}

async fn create_refund(
    State(state): State<AcmeState>,
    headers: HeaderMap,
    body: Result<Json<RefundRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let fingerprint = serde_json::to_string(&req).unwrap_or_default();
    let mut inner = state.inner.lock().await;
    if let Some(reply) = replay(&inner, &headers, "refund", &fingerprint)? {
        return Ok(reply);
    }
    if req.amount_cents <= 0 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount_cents must be positive"));
    }
    let order = inner.data.orders.get_mut(&req.order_id).ok_or_else(|| order_not_found(&req.order_id))?;
    let approver = req.approved_by.as_deref().map(str::trim).unwrap_or("");
    if req.amount_cents > REFUND_APPROVAL_LIMIT_CENTS && approver.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "approval_required",
            format!("refunds above {REFUND_APPROVAL_LIMIT_CENTS} cents need approved_by"),
        ));
    }
    let refundable = refundable_cents(order);
    if req.amount_cents > refundable {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "exceeds_refundable",
            format!("order {} has {refundable} cents left to refund", order.id),
        ));
    }
    let total_refunded = order.refunded_cents() + req.amount_cents;
    order.refund = Some(Refund { amount_cents: total_refunded, refunded_at: now(), reason: req.reason.clone() });
    // A partial refund keeps the order's shipping state; only a full one changes it.
    if total_refunded >= order.total_cents {
        order.status = "refunded".into();
    }
    let refund = json!({
        "refund_id": format!("R-{}", uuid::Uuid::new_v4().simple()),
        "order_id": req.order_id,
        "amount_cents": req.amount_cents,
        "total_refunded_cents": total_refunded,
        "reason": req.reason,
        "approved_by": req.approved_by,
        "status": "issued",
    });
    inner.refunds.push(refund.clone());
    Ok(remember(&mut inner, &headers, "refund", &fingerprint, StatusCode::CREATED, refund))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    subject: String,
    description: String,
    customer_id: Option<String>,
    order_id: Option<String>,
    priority: Option<String>,
}

async fn create_ticket(
    State(state): State<AcmeState>,
    headers: HeaderMap,
    body: Result<Json<TicketRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let fingerprint = serde_json::to_string(&req).unwrap_or_default();
    let mut inner = state.inner.lock().await;
    if let Some(reply) = replay(&inner, &headers, "ticket", &fingerprint)? {
        return Ok(reply);
    }
    if req.subject.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_subject", "subject must not be empty"));
    }
    let priority = req.priority.unwrap_or_else(|| "normal".into());
    if !["low", "normal", "high", "urgent"].contains(&priority.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_priority",
            "priority must be low, normal, high or urgent",
        ));
    }
    if let Some(customer) = &req.customer_id {
        if !inner.data.customers.contains_key(customer) {
            return Err(customer_not_found(customer));
        }
    }
    if let Some(order_id) = &req.order_id {
        let order = inner.data.orders.get(order_id).ok_or_else(|| order_not_found(order_id))?;
        if req.customer_id.as_ref().is_some_and(|c| *c != order.customer_id) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "order_of_another_customer",
                format!("order {order_id} does not belong to the given customer"),
            ));
        }
    }
    let ticket = json!({
        "id": format!("T-{}", 5001 + inner.tickets.len()),
        "subject": req.subject,
        "description": req.description,
        "customer_id": req.customer_id,
        "order_id": req.order_id,
        "priority": priority,
        "status": "open",
        "created_at": now(),
    });
    inner.tickets.push(ticket.clone());
    Ok(remember(&mut inner, &headers, "ticket", &fingerprint, StatusCode::CREATED, ticket))
}

/// The first answer given for this endpoint and `Idempotency-Key`, if any. The same key
/// with a different request is refused: replaying an unrelated answer would hide a mistake.
fn replay(
    inner: &Inner,
    headers: &HeaderMap,
    endpoint: &'static str,
    request: &str,
) -> Result<Option<Response>, ApiError> {
    let Some(key) = idempotency_key(headers) else { return Ok(None) };
    match inner.replies.get(&(endpoint, key.to_owned())) {
        None => Ok(None),
        Some(first) if first.request == request => Ok(Some((first.status, Json(first.body.clone())).into_response())),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        )),
    }
}

fn remember(
    inner: &mut Inner,
    headers: &HeaderMap,
    endpoint: &'static str,
    request: &str,
    status: StatusCode,
    body: Value,
) -> Response {
    if let Some(key) = idempotency_key(headers) {
        let remembered = Remembered { request: request.to_owned(), status, body: body.clone() };
        inner.replies.insert((endpoint, key.to_owned()), remembered);
    }
    (status, Json(body)).into_response()
}

fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty())
}

fn order_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "order_not_found", format!("no order {id}"))
}

fn customer_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "customer_not_found", format!("no customer {id}"))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
