//! The Acme backend as its callers see it: each test starts the real service on a random
//! port with a fresh copy of the seed data and talks HTTP to it.

use std::path::{Path, PathBuf};

use concierge_acme::{AcmeData, REFUND_APPROVAL_LIMIT_CENTS};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The seed data shipped with the demo.
fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/backend")
}

/// A running backend; it shuts down when dropped.
struct Backend {
    base: String,
    client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
}

impl Backend {
    async fn start() -> Self {
        let data = AcmeData::load(&seed_dir()).expect("the seed data loads");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(concierge_acme::serve(listener, data, async move {
            let _ = stopped.await;
        }));
        Self { base: format!("http://{addr}"), client: reqwest::Client::new(), _shutdown: shutdown }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.client.get(self.url(path)).send().await.expect("GET is answered")).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        answer(self.client.post(self.url(path)).json(&body).send().await.expect("POST is answered")).await
    }

    async fn post_with_key(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let request = self.client.post(self.url(path)).header("Idempotency-Key", key).json(&body);
        answer(request.send().await.expect("POST is answered")).await
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> reqwest::Response {
        let request = self.client.post(self.url(path)).header("content-type", content_type).body(body.to_owned());
        request.send().await.expect("POST is answered")
    }

    async fn order(&self, id: &str) -> Value {
        let (status, order) = self.get(&format!("/orders/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{order}");
        order
    }

    async fn refund(&self, order_id: &str, amount_cents: i64) -> (StatusCode, Value) {
        self.post("/refunds", json!({ "order_id": order_id, "amount_cents": amount_cents, "reason": "test" })).await
    }
}

async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.expect("the body is JSON");
    (status, body)
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error answer: {body}"))
}

// ---- orders and customers ---------------------------------------------------------------

#[tokio::test]
async fn an_order_shows_its_record_product_names_and_what_is_refundable() {
    let backend = Backend::start().await;
    let order = backend.order("A-10001").await;
    assert_eq!(order["id"], "A-10001");
    assert_eq!(order["customer_id"], "C-1001");
    assert_eq!(order["status"], "delivered");
    assert_eq!(order["total_cents"], 20998);
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(order["shipping"]["carrier"], "UPS");
    assert_eq!(order["product_names"], json!(["Acme Brew Smart Kettle", "Acme Burr Coffee Grinder"]));
    assert_eq!(order["refundable_cents"], 20998, "nothing refunded yet, so all of it");
    assert_eq!(order["refund"], Value::Null);

    let partly_refunded = backend.order("A-10002").await;
    assert_eq!(partly_refunded["refundable_cents"], 14999 - 14400);
}

#[tokio::test]
async fn an_unknown_order_is_404_order_not_found() {
    let backend = Backend::start().await;
    let (status, body) = backend.get("/orders/A-99999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "order_not_found");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("A-99999")), "{body}");
}

#[tokio::test]
async fn a_customer_is_shown_with_contact_details_tier_and_points() {
    let backend = Backend::start().await;
    let (status, customer) = backend.get("/customers/C-1001").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(customer["id"], "C-1001");
    assert_eq!(customer["name"], "Maria Lopez");
    assert_eq!(customer["email"], "maria.lopez@example.com");
    assert_eq!(customer["tier"], "plus");
    assert_eq!(customer["loyalty_points"], 1240);
    assert_eq!(customer["address"]["city"], "Austin");

    let (status, body) = backend.get("/customers/C-9999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "customer_not_found");
}

#[tokio::test]
async fn a_customers_orders_are_only_theirs_and_in_the_order_view() {
    let backend = Backend::start().await;
    let (status, body) = backend.get("/customers/C-1001/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["customer_id"], "C-1001");
    let orders = body["orders"].as_array().expect("orders is a list");
    let ids: Vec<&str> = orders.iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(ids, ["A-10001", "A-10014", "A-10031"]);
    assert!(orders.iter().all(|o| o["customer_id"] == "C-1001"));
    assert!(orders.iter().all(|o| o["product_names"].is_array() && o["refundable_cents"].is_i64()));

    let (status, body) = backend.get("/customers/C-9999/orders").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "customer_not_found");
}

// ---- cancellation -----------------------------------------------------------------------

#[tokio::test]
async fn a_processing_order_can_be_cancelled_and_stays_cancelled() {
    let backend = Backend::start().await;
    let (status, body) = backend.post("/orders/A-10036/cancel", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "order_id": "A-10036", "status": "cancelled" }));

    let order = backend.order("A-10036").await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["shipping"]["estimated_delivery"], Value::Null, "a cancelled order is not expected anywhere");

    let (status, body) = backend.post("/orders/A-10036/cancel", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "cancelling twice is refused: {body}");
    assert_eq!(error_code(&body), "not_cancellable");
}

#[tokio::test]
async fn shipped_or_delivered_orders_cannot_be_cancelled() {
    let backend = Backend::start().await;
    for (id, status_before) in [("A-10032", "shipped"), ("A-10001", "delivered")] {
        let (status, body) = backend.post(&format!("/orders/{id}/cancel"), json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{id}: {body}");
        assert_eq!(error_code(&body), "not_cancellable");
        assert_eq!(backend.order(id).await["status"], status_before, "{id} is left as it was");
    }
    let (status, body) = backend.post("/orders/A-99999/cancel", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "order_not_found");
}

// ---- refunds ----------------------------------------------------------------------------

#[tokio::test]
async fn a_partial_refund_is_issued_and_the_order_keeps_its_shipping_state() {
    let backend = Backend::start().await;
    let (status, refund) = backend.refund("A-10003", 5000).await;
    assert_eq!(status, StatusCode::CREATED, "{refund}");
    assert!(refund["refund_id"].as_str().is_some_and(|id| id.starts_with("R-")), "{refund}");
    assert_eq!(refund["order_id"], "A-10003");
    assert_eq!(refund["amount_cents"], 5000);
    assert_eq!(refund["total_refunded_cents"], 5000);
    assert_eq!(refund["status"], "issued");

    let order = backend.order("A-10003").await;
    assert_eq!(order["status"], "delivered", "a partial refund does not hide the delivery");
    assert_eq!(order["refund"]["amount_cents"], 5000);
    assert_eq!(order["refund"]["reason"], "test");
    assert_eq!(order["refundable_cents"], 9998 - 5000);
}

#[tokio::test]
async fn refund_above_the_limit_needs_an_approver() {
    let backend = Backend::start().await;
    let amount = REFUND_APPROVAL_LIMIT_CENTS + 1;
    let (status, body) = backend.refund("A-10007", amount).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "approval_required");

    let empty_approver = json!({ "order_id": "A-10007", "amount_cents": amount, "reason": "test", "approved_by": "" });
    let (status, body) = backend.post("/refunds", empty_approver).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an empty approver is no approver: {body}");
    assert_eq!(backend.order("A-10007").await["status"], "delivered", "refused refunds change nothing");

    let approved =
        json!({ "order_id": "A-10007", "amount_cents": amount, "reason": "test", "approved_by": "supervisor" });
    let (status, refund) = backend.post("/refunds", approved).await;
    assert_eq!(status, StatusCode::CREATED, "{refund}");
    assert_eq!(refund["approved_by"], "supervisor");
    assert_eq!(backend.order("A-10007").await["refund"]["amount_cents"], amount);
}

#[tokio::test]
async fn refund_exactly_at_the_limit_needs_no_approver() {
    let backend = Backend::start().await;
    let (status, body) = backend.refund("A-10007", REFUND_APPROVAL_LIMIT_CENTS).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn refund_cannot_exceed_what_is_left_to_refund() {
    let backend = Backend::start().await;
    let (status, body) = backend.refund("A-10002", 14999 - 14400 + 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "exceeds_refundable");

    let (status, body) = backend.refund("A-10002", 14999 - 14400).await;
    assert_eq!(status, StatusCode::CREATED, "the rest can still be refunded: {body}");
    assert_eq!(body["total_refunded_cents"], 14999);
    assert_eq!(backend.order("A-10002").await["refundable_cents"], 0);

    let (status, body) = backend.refund("A-10002", 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "exceeds_refundable");
}

#[tokio::test]
async fn refund_of_zero_or_a_negative_amount_is_refused() {
    let backend = Backend::start().await;
    for amount in [0, -500] {
        let (status, body) = backend.refund("A-10003", amount).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}: {body}");
        assert_eq!(error_code(&body), "invalid_amount");
    }
    assert_eq!(backend.order("A-10003").await["status"], "delivered");
}

#[tokio::test]
async fn a_processing_order_has_nothing_to_refund() {
    let backend = Backend::start().await;
    assert_eq!(backend.order("A-10036").await["refundable_cents"], 0);
    let (status, body) = backend.refund("A-10036", 100).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "exceeds_refundable");
    assert_eq!(backend.order("A-10036").await["status"], "processing");
}

#[tokio::test]
async fn refund_of_an_unknown_order_is_404() {
    let backend = Backend::start().await;
    let (status, body) = backend.refund("A-99999", 100).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "order_not_found");
}

#[tokio::test]
async fn unknown_fields_and_malformed_json_are_invalid_body() {
    let backend = Backend::start().await;
    let unknown_field = json!({ "order_id": "A-10003", "amount_cents": 100, "reason": "test", "urgent": true });
    let (status, body) = backend.post("/refunds", unknown_field).await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(error_code(&body), "invalid_body");

    let (status, body) = backend.post("/refunds", json!({ "order_id": "A-10003" })).await;
    assert!(status.is_client_error(), "missing fields: {status}");
    assert_eq!(error_code(&body), "invalid_body");

    for (path, text) in [("/refunds", "{\"order_id\": "), ("/tickets", "not json")] {
        let (status, body) = answer(backend.post_raw(path, "application/json", text).await).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert_eq!(error_code(&body), "invalid_body", "{path}");
    }

    let (status, body) = answer(backend.post_raw("/refunds", "text/plain", "{}").await).await;
    assert!(status.is_client_error(), "wrong content type: {status}");
    assert_eq!(error_code(&body), "invalid_body");

    assert_eq!(backend.order("A-10003").await["status"], "delivered");
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_refund_instead_of_refunding_twice() {
    let backend = Backend::start().await;
    let request = json!({ "order_id": "A-10004", "amount_cents": 1000, "reason": "late delivery" });
    let first = backend.post_with_key("/refunds", "refund-A-10004-1", request.clone()).await;
    let second = backend.post_with_key("/refunds", "refund-A-10004-1", request.clone()).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    assert_eq!(second, first, "the identical answer, refund id included");

    let order = backend.order("A-10004").await;
    assert_eq!(order["refund"]["amount_cents"], 1000, "refunded once");
    assert_eq!(order["refundable_cents"], 8598 - 1000);

    let (status, other) = backend.post_with_key("/refunds", "refund-A-10004-2", request).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other["refund_id"], first.1["refund_id"], "a new key is a new refund");
    assert_eq!(backend.order("A-10004").await["refund"]["amount_cents"], 2000);
}

#[tokio::test]
async fn a_refused_request_does_not_use_up_its_idempotency_key() {
    let backend = Backend::start().await;
    let (status, _) = backend
        .post_with_key("/refunds", "k-1", json!({ "order_id": "A-10004", "amount_cents": 0, "reason": "x" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = backend
        .post_with_key("/refunds", "k-1", json!({ "order_id": "A-10004", "amount_cents": 10, "reason": "x" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "the corrected request goes through: {body}");
}

// ---- tickets ----------------------------------------------------------------------------

#[tokio::test]
async fn a_ticket_is_opened_with_an_id_and_normal_priority_by_default() {
    let backend = Backend::start().await;
    let request = json!({
        "subject": "Kettle will not switch on",
        "description": "Light blinks red",
        "customer_id": "C-1001",
        "order_id": "A-10001",
    });
    let (status, ticket) = backend.post("/tickets", request).await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    assert!(ticket["id"].as_str().is_some_and(|id| id.starts_with("T-")), "{ticket}");
    assert_eq!(ticket["priority"], "normal");
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["customer_id"], "C-1001");
    assert_eq!(ticket["order_id"], "A-10001");

    let (_, second) = backend.post("/tickets", json!({ "subject": "Another", "description": "" })).await;
    assert_ne!(second["id"], ticket["id"], "every ticket has its own id");
}

#[tokio::test]
async fn a_ticket_with_an_unknown_priority_or_customer_or_no_subject_is_refused() {
    let backend = Backend::start().await;
    let (status, body) =
        backend.post("/tickets", json!({ "subject": "Help", "description": "", "priority": "asap" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_priority");

    let (status, body) =
        backend.post("/tickets", json!({ "subject": "Help", "description": "", "customer_id": "C-9999" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "customer_not_found");

    let (status, body) = backend.post("/tickets", json!({ "subject": "  ", "description": "" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_subject");
}

// ---- the legacy SOAP loyalty service ----------------------------------------------------

fn loyalty_request(customer_id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:loy="urn:acme:loyalty">
  <soap:Header/>
  <soap:Body>
    <loy:GetLoyaltyBalance>
      <loy:CustomerId>{customer_id}</loy:CustomerId>
    </loy:GetLoyaltyBalance>
  </soap:Body>
</soap:Envelope>"#
    )
}

async fn soap_call(backend: &Backend, envelope: &str) -> (StatusCode, String, String) {
    let response = backend.post_raw("/soap/loyalty", "text/xml; charset=utf-8", envelope).await;
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, content_type, response.text().await.expect("a text body"))
}

/// The text of the first `<name>…</name>` element in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

#[tokio::test]
async fn soap_loyalty_balance_gives_the_customers_points_and_their_value() {
    let backend = Backend::start().await;
    let (_, customer) = backend.get("/customers/C-1003").await;
    let points = customer["loyalty_points"].as_i64().expect("points are a number");

    let (status, content_type, xml) = soap_call(&backend, &loyalty_request("C-1003")).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    assert!(xml.contains("<soap:Envelope") && xml.contains("GetLoyaltyBalanceResponse"), "{xml}");
    assert_eq!(element(&xml, "CustomerId"), Some("C-1003"));
    assert_eq!(element(&xml, "Points"), Some(points.to_string().as_str()));
    assert_eq!(element(&xml, "ValueCents"), Some((points * 5).to_string().as_str()), "100 points are worth $5");
    assert_eq!(element(&xml, "Tier"), Some("plus"));
}

#[tokio::test]
async fn soap_loyalty_for_an_unknown_customer_is_a_client_fault() {
    let backend = Backend::start().await;
    let (status, content_type, xml) = soap_call(&backend, &loyalty_request("C-9999")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "SOAP 1.1 sends faults with 500");
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    assert!(xml.contains("<soap:Fault>"), "{xml}");
    assert_eq!(element(&xml, "faultcode"), Some("soap:Client"));
    assert!(element(&xml, "faultstring").is_some_and(|s| s.contains("C-9999")), "{xml}");
}

#[tokio::test]
async fn soap_loyalty_with_malformed_xml_is_a_client_fault() {
    let backend = Backend::start().await;
    for envelope in ["<soap:Envelope><soap:Body><GetLoyaltyBalance>", "not xml at all", "<Envelope><Body/></Envelope>"]
    {
        let (status, _, xml) = soap_call(&backend, envelope).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{envelope}: {xml}");
        assert_eq!(element(&xml, "faultcode"), Some("soap:Client"), "{envelope}: {xml}");
    }
}

// ---- routing ----------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_route_is_404_route_not_found() {
    let backend = Backend::start().await;
    let (status, body) = backend.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "route_not_found");

    let (status, body) = backend.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

// ---- loading the seed data --------------------------------------------------------------

/// A copy of the seed data in a temporary folder, with `orders.json` changed by `edit`.
fn seed_copy_with_orders(edit: impl FnOnce(&mut Vec<Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for file in ["products.json", "customers.json"] {
        std::fs::copy(seed_dir().join(file), dir.path().join(file)).expect("copy a seed file");
    }
    let text = std::fs::read_to_string(seed_dir().join("orders.json")).expect("read orders.json");
    let mut orders: Vec<Value> = serde_json::from_str(&text).expect("orders.json is a list");
    edit(&mut orders);
    std::fs::write(dir.path().join("orders.json"), serde_json::to_string(&orders).expect("serialise"))
        .expect("write orders.json");
    dir
}

#[test]
fn loading_refuses_an_order_of_an_unknown_customer_naming_the_order_and_the_file() {
    let dir = seed_copy_with_orders(|orders| orders[4]["customer_id"] = json!("C-4242"));
    let err = AcmeData::load(dir.path()).expect_err("an unknown customer is refused").to_string();
    assert!(err.contains("A-10005") && err.contains("C-4242"), "{err}");
    assert!(err.contains("orders.json"), "{err}");
}

#[test]
fn loading_refuses_an_order_of_an_unknown_product() {
    let dir = seed_copy_with_orders(|orders| orders[0]["items"][1]["sku"] = json!("XYZ-1"));
    let err = AcmeData::load(dir.path()).expect_err("an unknown product is refused").to_string();
    assert!(err.contains("A-10001") && err.contains("XYZ-1") && err.contains("orders.json"), "{err}");
}

#[test]
fn loading_a_folder_without_seed_files_names_the_missing_file() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let err = AcmeData::load(dir.path()).expect_err("nothing to load").to_string();
    assert!(err.contains("products.json"), "{err}");
}

#[tokio::test]
async fn refunding_the_whole_order_marks_it_refunded() {
    let backend = Backend::start().await;
    let (status, body) = backend.refund("A-10003", 9998).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(backend.order("A-10003").await["status"], "refunded");
}

#[tokio::test]
async fn a_blank_approver_is_no_approver() {
    let backend = Backend::start().await;
    let body = json!({ "order_id": "A-10007", "amount_cents": REFUND_APPROVAL_LIMIT_CENTS + 1, "reason": "test", "approved_by": "   " });
    let (status, body) = backend.post("/refunds", body).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "approval_required"));
}

#[tokio::test]
async fn a_large_refund_of_an_unknown_order_is_404_not_an_approval_question() {
    let backend = Backend::start().await;
    let (status, body) = backend.refund("A-99999", REFUND_APPROVAL_LIMIT_CENTS + 1).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "order_not_found"));
}

#[tokio::test]
async fn an_idempotency_key_is_scoped_to_its_endpoint_and_request() {
    let backend = Backend::start().await;
    let (status, _) = backend.post_with_key("/orders/A-10036/cancel", "k-1", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    // The same key on another endpoint is a different request altogether.
    let refund = json!({ "order_id": "A-10003", "amount_cents": 1000, "reason": "test" });
    let (status, body) = backend.post_with_key("/refunds", "k-1", refund.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The same key on the same endpoint with a different body is refused, not replayed.
    let other = json!({ "order_id": "A-10003", "amount_cents": 2000, "reason": "test" });
    let (status, body) = backend.post_with_key("/refunds", "k-1", other).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
    assert_eq!(backend.order("A-10003").await["refund"]["amount_cents"], 1000);
}

#[tokio::test]
async fn a_ticket_cannot_name_another_customers_or_an_unknown_order() {
    let backend = Backend::start().await;
    let ticket =
        |order: &str| json!({ "subject": "Help", "description": "x", "customer_id": "C-1001", "order_id": order });
    let (status, body) = backend.post("/tickets", ticket("A-10002")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "order_of_another_customer"));
    let (status, body) = backend.post("/tickets", ticket("A-99999")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "order_not_found"));
    let (status, body) = backend.post("/tickets", ticket("A-10001")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[test]
fn loading_refuses_a_repeated_order_id() {
    let dir = seed_copy_with_orders(|orders| {
        let first = orders[0].clone();
        orders.push(first);
    });
    let err = AcmeData::load(dir.path()).expect_err("a repeated id is refused").to_string();
    assert!(err.contains("A-10001 appears twice") && err.contains("orders.json"), "{err}");
}

#[test]
fn the_shipped_seed_data_loads() {
    let data = AcmeData::load(&seed_dir()).expect("the seed data loads");
    assert_eq!((data.orders.len(), data.customers.len(), data.products.len()), (40, 15, 5));
}
