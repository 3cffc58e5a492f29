//! Declared tools against the real Acme backend: validation before any call, real HTTP
//! (JSON and SOAP), one call per idempotency key, and an audit record for each.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use concierge_agent::{BackendSpec, CallContext, ToolError, ToolRegistry, ToolSpec};
use concierge_core::{Conversation, ConversationId, ConversationStatus, Tenant, TenantId, ToolCallOutcome};
use concierge_store::Store;
use serde_json::json;

/// The demo configuration's `[backends]` and `[[tools]]`, so the tests exercise exactly what
/// the demo ships.
#[derive(serde::Deserialize)]
struct DemoTools {
    backends: BTreeMap<String, BackendSpec>,
    tools: Vec<ToolSpec>,
}

fn demo_tools(backend_url: &str) -> (Vec<ToolSpec>, BTreeMap<String, BackendSpec>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/concierge.toml");
    let text = std::fs::read_to_string(path).expect("demo config");
    let mut parsed: DemoTools = toml::from_str(&text).expect("demo tools parse");
    parsed.backends.get_mut("acme").expect("acme backend").url = backend_url.to_owned();
    (parsed.tools, parsed.backends)
}

async fn acme_backend() -> String {
    let data =
        concierge_acme::AcmeData::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/backend"))
            .expect("seed data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(concierge_acme::serve(listener, data, std::future::pending()));
    format!("http://{addr}")
}

struct Fixture {
    store: Arc<dyn Store>,
    ctx: CallContext,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let store = concierge_store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.expect("store");
    store.migrate().await.expect("migrate");
    let tenant: TenantId = "acme".parse().expect("tenant");
    let now = concierge_core::now();
    store
        .upsert_tenant(&Tenant { id: tenant.clone(), name: "Acme".into(), tier: "standard".into(), created_at: now })
        .await
        .expect("tenant");
    let conversation = ConversationId::new();
    store
        .create_conversation(&Conversation {
            id: conversation,
            tenant_id: tenant.clone(),
            customer_ref: None,
            channel: "api".into(),
            status: ConversationStatus::Open,
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("conversation");
    Fixture { store, ctx: CallContext { tenant, conversation, turn: 1, step: 0 }, _dir: dir }
}

#[tokio::test]
async fn order_ids_in_a_message_find_the_lookup_tool_and_its_argument() {
    let (tools, backends) = demo_tools("http://127.0.0.1:9");
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("demo tools compile");
    let (spec, args) = registry.find_lookup("hi, where is A-10024 please?").expect("found");
    assert_eq!(spec.name, "get_order");
    assert_eq!(args, json!({ "order_id": "A-10024" }));
    let (spec, args) = registry.find_lookup("points balance for C-1001").expect("found");
    assert_eq!((spec.name.as_str(), args), ("loyalty_balance", json!({ "customer_id": "C-1001" })));
    assert!(registry.find_lookup("where is my order?").is_none());
    assert!(registry.find_lookup("XA-100245").is_none(), "ids are matched as whole words");
}

#[tokio::test]
async fn a_lookup_calls_the_backend_once_and_is_audited() {
    let f = fixture().await;
    let (tools, backends) = demo_tools(&acme_backend().await);
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    let result = registry
        .call(f.store.as_ref(), &f.ctx, "get_order", json!({ "order_id": "A-10024" }), None)
        .await
        .expect("call");
    assert_eq!(result.outcome, ToolCallOutcome::Ok);
    assert_eq!(result.status, Some(200));
    assert_eq!(result.data["status"], "delayed");
    assert!(!result.replayed);
    let answer = registry.render_answer("get_order", &json!({ "order_id": "A-10024" }), &result).expect("answer");
    assert!(answer.contains("A-10024") && answer.contains("delayed") && answer.contains("customs"), "{answer}");

    let audit = f.store.tool_calls(&f.ctx.tenant, f.ctx.conversation).await.expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].tool, "get_order");
    assert_eq!(audit[0].arguments, json!({ "order_id": "A-10024" }));
    assert_eq!(audit[0].outcome, ToolCallOutcome::Ok);
}

#[tokio::test]
async fn the_same_step_is_never_executed_twice() {
    let f = fixture().await;
    let (tools, backends) = demo_tools(&acme_backend().await);
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    let args = json!({ "order_id": "A-10036" });
    let first = registry.call(f.store.as_ref(), &f.ctx, "cancel_order", args.clone(), None).await.expect("first");
    assert_eq!((first.outcome, first.status), (ToolCallOutcome::Ok, Some(200)));
    // A resumed run repeats the step: the recorded result comes back, the backend is not
    // asked again (a second real cancel would answer 409 not_cancellable).
    let again = registry.call(f.store.as_ref(), &f.ctx, "cancel_order", args.clone(), None).await.expect("again");
    assert!(again.replayed);
    assert_eq!(again.status, Some(200));
    assert_eq!(again.data, first.data);
    // The next step is a new call, and the backend's rule shows it really was cancelled.
    let next = CallContext { step: 1, ..f.ctx.clone() };
    let second = registry.call(f.store.as_ref(), &next, "cancel_order", args, None).await.expect("second");
    assert_eq!((second.outcome, second.status), (ToolCallOutcome::Error, Some(409)));
    assert_eq!(second.data["error"]["code"], "not_cancellable");
}

#[tokio::test]
async fn invalid_arguments_never_reach_the_backend() {
    let f = fixture().await;
    let (tools, backends) = demo_tools("http://127.0.0.1:9");
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    for args in [
        json!({}),
        json!({ "order_id": "10024" }),
        json!({ "order_id": 10024 }),
        json!({ "order_id": "A-10024", "x": 1 }),
    ] {
        let err = registry.call(f.store.as_ref(), &f.ctx, "get_order", args.clone(), None).await.unwrap_err();
        assert!(matches!(err, ToolError::InvalidArguments { .. }), "{args}: {err}");
    }
    let err = registry
        .call(
            f.store.as_ref(),
            &f.ctx,
            "create_refund",
            json!({ "order_id": "A-10021", "amount_cents": -5, "reason": "x" }),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("amount_cents") || err.to_string().contains("minimum"), "{err}");
    assert!(matches!(
        registry.call(f.store.as_ref(), &f.ctx, "format_disk", json!({}), None).await,
        Err(ToolError::Unknown(_))
    ));
    assert!(f.store.tool_calls(&f.ctx.tenant, f.ctx.conversation).await.expect("audit").is_empty());
}

#[tokio::test]
async fn soap_tools_send_escaped_xml_and_read_the_response_leaves() {
    let f = fixture().await;
    let (tools, backends) = demo_tools(&acme_backend().await);
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    let result = registry
        .call(f.store.as_ref(), &f.ctx, "loyalty_balance", json!({ "customer_id": "C-1001" }), None)
        .await
        .expect("call");
    assert_eq!(result.outcome, ToolCallOutcome::Ok, "{:?}", result.data);
    assert_eq!(result.data["Points"], "1240");
    assert_eq!(result.data["ValueCents"], "6200");
    let next = CallContext { step: 1, ..f.ctx.clone() };
    let fault = registry
        .call(f.store.as_ref(), &next, "loyalty_balance", json!({ "customer_id": "C-9999" }), None)
        .await
        .expect("call");
    assert_eq!(fault.outcome, ToolCallOutcome::Error);
    assert_eq!(fault.data["faultcode"], "soap:Client");
}

#[tokio::test]
async fn an_unreachable_or_slow_backend_is_an_outcome_not_a_crash() {
    let f = fixture().await;
    // Test double: a backend that accepts connections and never answers in time.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let slow = axum::Router::new().route(
        "/orders/{id}",
        axum::routing::get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                "late"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let (mut tools, backends) = demo_tools(&format!("http://{addr}"));
    tools.iter_mut().for_each(|t| t.timeout_ms = 200);
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    let started = std::time::Instant::now();
    let result = registry
        .call(f.store.as_ref(), &f.ctx, "get_order", json!({ "order_id": "A-10024" }), None)
        .await
        .expect("call");
    assert_eq!(result.outcome, ToolCallOutcome::Timeout);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (tools, backends) = demo_tools("http://127.0.0.1:9");
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    let next = CallContext { step: 1, ..f.ctx.clone() };
    let result = registry
        .call(f.store.as_ref(), &next, "get_order", json!({ "order_id": "A-10024" }), None)
        .await
        .expect("call");
    assert_eq!(result.outcome, ToolCallOutcome::Error);
    let answer = registry.render_answer("get_order", &json!({ "order_id": "A-10024" }), &result).expect("answer");
    assert!(answer.contains("couldn't look up order A-10024"), "{answer}");
}

#[test]
fn bad_declarations_are_refused_naming_the_tool_and_key() {
    let (tools, backends) = demo_tools("http://127.0.0.1:9");
    let base = tools.iter().find(|t| t.name == "get_order").expect("get_order").clone();
    let check = |mutate: &dyn Fn(&mut ToolSpec), want: &str| {
        let mut spec = base.clone();
        mutate(&mut spec);
        let err = ToolRegistry::new(&[spec], &backends, |_| None).err().expect("refused").to_string();
        assert!(err.contains(want), "expected `{want}` in: {err}");
    };
    check(&|s| s.backend = "nope".into(), "tools.get_order: backend: no backend `nope`");
    check(&|s| s.path = "/orders/{orderid}".into(), "tools.get_order: path: `{orderid}` is not a declared parameter");
    check(&|s| s.parameters = json!({ "type": "wrong" }), "tools.get_order: parameters: not a valid JSON Schema");
    check(&|s| s.risk = concierge_agent::Risk::High, "tools.get_order: lookup: only low-risk tools");
    check(&|s| s.answer = Some("{% if %}".into()), "tools.get_order: answer:");
    check(&|s| s.name = "Get Order".into(), "name: expected 1 to 64 characters");
    let err = ToolRegistry::new(&[base.clone(), base.clone()], &backends, |_| None).err().expect("dup").to_string();
    assert!(err.contains("`get_order` is declared twice"), "{err}");
    let mut secured = backends.clone();
    secured.get_mut("acme").expect("acme").token_env = Some("ACME_TOKEN_FOR_TEST".into());
    let err = ToolRegistry::new(&[base], &secured, |_| None).err().expect("no token").to_string();
    assert!(err.contains("needs the environment variable ACME_TOKEN_FOR_TEST"), "{err}");
}

#[test]
fn a_refund_waits_for_approval_only_above_the_declared_limit_and_a_cancel_always_does() {
    let (tools, backends) = demo_tools("http://127.0.0.1:9");
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    let refund = |cents: i64| json!({ "order_id": "A-10021", "amount_cents": cents, "reason": "missing item" });
    assert!(!registry.needs_approval("create_refund", &refund(2000)));
    assert!(!registry.needs_approval("create_refund", &refund(10000)));
    assert!(registry.needs_approval("create_refund", &refund(10001)));
    assert!(registry.needs_approval("cancel_order", &json!({ "order_id": "A-10036" })));
    assert!(!registry.needs_approval("get_order", &json!({ "order_id": "A-10036" })));
    assert!(registry.needs_approval("no_such_tool", &json!({})));
}

#[test]
fn facts_are_found_in_any_case_and_kept_in_the_schema_s() {
    let (tools, backends) = demo_tools("http://127.0.0.1:9");
    let registry = ToolRegistry::new(&tools, &backends, |_| None).expect("compile");
    let facts = registry.facts_in("tracking for a-10039 pls, customer c-1002, and A-10024 too");
    let expected = [("order_id", "A-10039"), ("customer_id", "C-1002"), ("order_id", "A-10024")];
    let facts: Vec<(&str, &str)> = facts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(facts, expected);
    assert!(registry.facts_in("nothing here, A-1234 is too short").is_empty());
}
