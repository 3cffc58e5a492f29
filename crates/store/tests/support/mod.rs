//! Runs one store test against a real backend, and builds the records tests store.
//!
//! Every test gets a database of its own: a fresh SQLite file in a temporary directory, or
//! a fresh PostgreSQL database created through `DATABASE_URL` and dropped afterwards, so
//! tests run in parallel and never see each other's rows.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use concierge_core::{
    ApiKeyRecord, ApiRole, Approval, ApprovalId, ApprovalStatus, Chunk, Conversation, ConversationId,
    ConversationStatus, Document, DocumentId, Job, JobId, JobState, MessageId, Role, Tenant, TenantId, Ticket,
    TicketId, TicketPriority, TicketStatus, ToolCallOutcome, ToolCallRecord, UsageRecord,
};
use concierge_store::{NewMessage, Store};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether the test starts from a migrated database or an empty one.
pub enum Schema {
    Migrated,
    Empty,
}

/// Declares each listed test (an `async fn(Arc<dyn Store>)` in the calling file) once per
/// backend: `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! store_tests {
    ($($schema:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        $crate::store_tests!(@backend sqlite, Sqlite, $($schema: [$($test),*]),*);
        $crate::store_tests!(@backend postgres, Postgres, $($schema: [$($test),*]),*);
    };
    (@backend $module:ident, $backend:ident, $($schema:ident: [$($test:ident),*]),*) => {
        mod $module {
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    $crate::support::run(
                        $crate::support::Backend::$backend,
                        $crate::support::Schema::$schema,
                        stringify!($test),
                        super::$test,
                    )
                    .await;
                }
            )*)*
        }
    };
}

/// Runs `test` on a store of its own on `backend`.
pub async fn run<F, Fut>(backend: Backend, schema: Schema, name: &str, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("create a temporary directory");
            // A directory that does not exist yet: connecting must create it.
            let url = format!("sqlite://{}/data/concierge.db", dir.path().display());
            run_on(url, schema, test).await;
        }
        Backend::Postgres => {
            let admin_url = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    eprintln!("SKIPPED postgres store test {name}: DATABASE_URL not set");
                    return;
                }
            };
            let database = TestDatabase::create(&admin_url).await;
            // In a task of its own, so a failing test still drops its database.
            let outcome = tokio::spawn(run_on(database.url.clone(), schema, test)).await;
            database.drop().await;
            if let Err(failure) = outcome {
                std::panic::resume_unwind(failure.into_panic());
            }
        }
    }
}

async fn run_on<F, Fut>(url: String, schema: Schema, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = concierge_store::open(&url).await.expect("open the test store");
    if let Schema::Migrated = schema {
        store.migrate().await.expect("migrate the test store");
    }
    test(Arc::clone(&store)).await;
    store.close().await;
}

/// A PostgreSQL database that exists for one test.
struct TestDatabase {
    admin: PgConnection,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `concierge_t_<uuid>`. A set but unreachable `DATABASE_URL` fails the test:
    /// a broken CI database must not pass as a skipped one.
    async fn create(admin_url: &str) -> Self {
        let mut admin = PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|err| panic!("DATABASE_URL is set but PostgreSQL is unreachable: {err}"));
        let name = format!("concierge_t_{}", uuid::Uuid::new_v4().simple());
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create the test database");
        let url = PgConnectOptions::from_str(admin_url)
            .expect("parse DATABASE_URL")
            .database(&name)
            .to_url_lossy()
            .to_string();
        Self { admin, name, url }
    }

    async fn drop(mut self) {
        // FORCE ends connections a failed test left open.
        self.admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
            .expect("drop the test database");
        self.admin.close().await.ok();
    }
}

// ---- records ------------------------------------------------------------------------

/// A fixed time plus `seconds`, with microseconds so precision loss would show.
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap() + Duration::microseconds(123_456) + Duration::seconds(seconds)
}

/// Now, to the microsecond as the store keeps it.
pub fn now() -> DateTime<Utc> {
    concierge_core::now().trunc_subsecs(6)
}

pub fn tenant_id(id: &str) -> TenantId {
    id.parse().unwrap()
}

pub fn tenant(id: &str) -> Tenant {
    Tenant { id: tenant_id(id), name: format!("{id} Inc."), tier: "free".into(), created_at: at(0) }
}

pub async fn seed_tenant(store: &Arc<dyn Store>, id: &str) -> TenantId {
    store.upsert_tenant(&tenant(id)).await.unwrap();
    tenant_id(id)
}

pub fn api_key(tenant: &TenantId, prefix: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        prefix: prefix.into(),
        tenant_id: tenant.clone(),
        role: ApiRole::Operator,
        secret_hash: format!("argon2:{prefix}"),
        label: "support desk".into(),
        created_at: at(1),
        revoked_at: None,
    }
}

pub fn conversation(tenant: &TenantId, created: i64) -> Conversation {
    Conversation {
        id: ConversationId::new(),
        tenant_id: tenant.clone(),
        customer_ref: Some("cust-42".into()),
        channel: "web".into(),
        status: ConversationStatus::Open,
        created_at: at(created),
        updated_at: at(created),
    }
}

pub async fn seed_conversation(store: &Arc<dyn Store>, tenant: &TenantId) -> Conversation {
    let conversation = conversation(tenant, 10);
    store.create_conversation(&conversation).await.unwrap();
    conversation
}

pub fn new_message(conversation: &Conversation, content: &str) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation_id: conversation.id,
        tenant_id: conversation.tenant_id.clone(),
        role: Role::User,
        content: content.into(),
        metadata: json!({ "intent": "refund", "citations": [1, 2] }),
    }
}

pub fn tool_call(conversation: &Conversation, key: &str, created: i64) -> ToolCallRecord {
    ToolCallRecord {
        idempotency_key: key.into(),
        tenant_id: conversation.tenant_id.clone(),
        conversation_id: Some(conversation.id),
        tool: "refund_order".into(),
        arguments: json!({ "order": "A-1001", "amount_cents": 2500 }),
        result: Some(json!({ "refunded": true })),
        outcome: ToolCallOutcome::Ok,
        latency_ms: 182,
        approved_by: Some("ops@acme".into()),
        created_at: at(created),
    }
}

pub fn ticket(conversation: &Conversation, created: i64, status: TicketStatus) -> Ticket {
    Ticket {
        id: TicketId::new(),
        tenant_id: conversation.tenant_id.clone(),
        conversation_id: Some(conversation.id),
        subject: "Refund for A-1001".into(),
        summary: "Customer asks for a refund of a damaged parcel.".into(),
        priority: TicketPriority::High,
        status,
        external_ref: None,
        created_at: at(created),
        updated_at: at(created),
    }
}

pub fn approval(conversation: &Conversation, requested: i64) -> Approval {
    Approval {
        id: ApprovalId::new(),
        tenant_id: conversation.tenant_id.clone(),
        conversation_id: conversation.id,
        run_id: format!("{}:1", conversation.id),
        tool: "refund_order".into(),
        arguments: json!({ "order": "A-1001", "amount_cents": 25000 }),
        status: ApprovalStatus::Pending,
        requested_at: at(requested),
        expires_at: None,
        decided_by: None,
        decided_at: None,
        reason: None,
    }
}

pub fn document(tenant: &TenantId, external_id: &str, version: i64) -> Document {
    Document {
        id: DocumentId::new(),
        tenant_id: tenant.clone(),
        external_id: external_id.into(),
        title: format!("{external_id} v{version}"),
        url: Some(format!("https://help.example.com/{external_id}")),
        metadata: json!({ "lang": "en" }),
        content_hash: format!("sha256:{external_id}:{version}"),
        version,
        updated_at: at(version),
    }
}

pub fn chunks(document: &Document, ordinals: &[i64]) -> Vec<Chunk> {
    ordinals
        .iter()
        .map(|&ordinal| Chunk {
            document_id: document.id,
            ordinal,
            parent: (ordinal > 0).then_some(0),
            heading: format!("Section {ordinal}"),
            text: format!("Text of section {ordinal} of {}", document.title),
            token_count: 10 + ordinal,
        })
        .collect()
}

pub fn job(tenant: &TenantId, priority: i32, created: i64) -> Job {
    Job {
        id: JobId::new(),
        tenant_id: tenant.clone(),
        kind: "ingest".into(),
        payload: json!({ "source": "zendesk" }),
        priority,
        state: JobState::Queued,
        attempts: 0,
        result: None,
        error: None,
        claimed_by: None,
        created_at: at(created),
        updated_at: at(created),
    }
}

pub fn usage(tenant: &TenantId, created: i64, prompt_tokens: i64) -> UsageRecord {
    UsageRecord {
        tenant_id: tenant.clone(),
        conversation_id: None,
        model: "qwen2.5-7b".into(),
        prompt_tokens,
        completion_tokens: prompt_tokens / 2,
        cost_micros: prompt_tokens * 3,
        created_at: at(created),
    }
}
