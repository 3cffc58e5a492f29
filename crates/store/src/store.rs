//! The `Store` trait: every read and write Concierge makes, independent of the database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use concierge_core::{
    ApiKeyRecord, Approval, ApprovalId, Checkpoint, Chunk, Conversation, ConversationId, ConversationStatus, Document,
    DocumentId, Feedback, Job, JobId, Message, MessageId, Role, Tenant, TenantId, Ticket, TicketId, TicketStatus,
    ToolCallRecord, UsageRecord, UsageSummary,
};
use serde_json::Value;

use crate::Result;

/// A message to append. The store assigns its place (`seq`) and its time, so these are
/// the only fields a caller chooses.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub tenant_id: TenantId,
    pub role: Role,
    pub content: String,
    pub metadata: Value,
}

/// Persistence for Concierge's records, shared as `Arc<dyn Store>`.
///
/// Conventions every backend keeps:
/// - Reads scoped by a tenant return `None` or nothing when the record belongs to another
///   tenant; writes scoped by a tenant fail with [`StoreError::NotFound`] the same way, so a
///   caller cannot learn that another tenant's record exists.
/// - Timestamps are kept to the microsecond (PostgreSQL's precision), on every backend, so a
///   record reads back equal to what was written once its times are truncated that way.
/// - Each call is one round trip unless its doc says otherwise; calls that write several
///   rows do so in one transaction.
///
/// [`StoreError::NotFound`]: crate::StoreError::NotFound
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for logs and the health endpoint.
    fn backend(&self) -> &'static str;

    /// Brings the schema up to date. Applied migrations are skipped, so calling it again is
    /// a no-op; concurrent callers (threads or processes) are serialized by a database lock.
    async fn migrate(&self) -> Result<()>;

    /// Checks that the database answers (`SELECT 1`).
    async fn ping(&self) -> Result<()>;

    /// Closes the connection pool after in-flight calls finish. Later calls fail with
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    async fn close(&self);

    /// Creates the tenant or updates its name and tier; `created_at` of an existing tenant
    /// is kept.
    async fn upsert_tenant(&self, tenant: &Tenant) -> Result<()>;

    /// The tenant with this id.
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;

    /// Stores a new API key. A prefix already in use is a `Conflict`.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()>;

    /// The key with this public prefix, revoked or not; the caller checks `revoked_at`.
    /// Not tenant-scoped: this is how a request's tenant is found.
    async fn api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>>;

    /// The tenant's keys, revoked ones too, oldest first.
    async fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>>;

    /// Marks the key revoked at `at`. Revoking twice keeps the first time; an unknown prefix
    /// is `NotFound`.
    async fn revoke_api_key(&self, prefix: &str, at: DateTime<Utc>) -> Result<()>;

    /// Stores a new conversation. An id already in use is a `Conflict`; an unknown tenant is
    /// `NotFound`.
    async fn create_conversation(&self, conversation: &Conversation) -> Result<()>;

    /// The conversation, if it belongs to `tenant`.
    async fn conversation(&self, tenant: &TenantId, id: ConversationId) -> Result<Option<Conversation>>;

    /// Sets the status and bumps `updated_at`.
    async fn set_conversation_status(
        &self,
        tenant: &TenantId,
        id: ConversationId,
        status: ConversationStatus,
    ) -> Result<()>;

    /// Up to `limit` of the tenant's conversations, newest first. With `before`, only those
    /// created before that conversation (keyset paging: pass the last id of the previous
    /// page); an unknown `before` yields an empty page. Served by an index.
    async fn list_conversations(
        &self,
        tenant: &TenantId,
        limit: u32,
        before: Option<ConversationId>,
    ) -> Result<Vec<Conversation>>;

    /// Appends a message as the next in its conversation and bumps the conversation's
    /// `updated_at`. Concurrent appends to one conversation are serialized by a lock on it
    /// (one transaction, three statements), so they get distinct, consecutive `seq`s from 1.
    /// A conversation that does not exist for the tenant is `NotFound`.
    async fn append_message(&self, message: NewMessage) -> Result<Message>;

    /// The conversation's messages ordered by `seq`; empty for another tenant.
    async fn messages(&self, tenant: &TenantId, conversation: ConversationId) -> Result<Vec<Message>>;

    /// One message of the tenant's, by id.
    async fn message(&self, tenant: &TenantId, id: MessageId) -> Result<Option<Message>>;

    /// Stores the state of a run after one step. A second checkpoint for the same
    /// `(run_id, step)` is a `Conflict`.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// The checkpoint with the highest step of the run.
    async fn latest_checkpoint(&self, run_id: &str) -> Result<Option<Checkpoint>>;

    /// Appends a tool call to the audit log. A reused idempotency key is a `Conflict`: the
    /// side effect already happened and must not be repeated.
    async fn record_tool_call(&self, call: &ToolCallRecord) -> Result<()>;

    /// The recorded call with this idempotency key, so a resumed run can reuse its result.
    async fn tool_call(&self, idempotency_key: &str) -> Result<Option<ToolCallRecord>>;

    /// The conversation's tool calls, oldest first.
    async fn tool_calls(&self, tenant: &TenantId, conversation: ConversationId) -> Result<Vec<ToolCallRecord>>;

    /// Stores a new ticket.
    async fn create_ticket(&self, ticket: &Ticket) -> Result<()>;

    /// The ticket, if it belongs to `tenant`.
    async fn ticket(&self, tenant: &TenantId, id: TicketId) -> Result<Option<Ticket>>;

    /// Up to `limit` of the tenant's tickets, newest first, optionally only those with
    /// `status`. Served by an index.
    async fn list_tickets(&self, tenant: &TenantId, status: Option<TicketStatus>, limit: u32) -> Result<Vec<Ticket>>;

    /// Sets the status and bumps `updated_at`.
    async fn set_ticket_status(&self, tenant: &TenantId, id: TicketId, status: TicketStatus) -> Result<()>;

    /// Stores a new approval request.
    async fn create_approval(&self, approval: &Approval) -> Result<()>;

    /// The approval, if it belongs to `tenant`.
    async fn approval(&self, tenant: &TenantId, id: ApprovalId) -> Result<Option<Approval>>;

    /// The tenant's approvals still waiting for a decision, oldest first.
    async fn pending_approvals(&self, tenant: &TenantId) -> Result<Vec<Approval>>;

    /// Records a human decision and returns the decided approval. The check that it is
    /// still pending and the write are one conditional `UPDATE`, so of two concurrent
    /// deciders exactly one wins; the other, and any later decision, gets a `Conflict`.
    /// An unknown approval is `NotFound` (telling the two apart costs one more read). One
    /// past its `expires_at` is marked expired and the decision is a `Conflict`.
    async fn decide_approval(
        &self,
        tenant: &TenantId,
        id: ApprovalId,
        approved: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval>;

    /// Stores a rating; a second rating of the same message replaces the first. A message
    /// that does not exist in that conversation for that tenant is `NotFound`.
    async fn add_feedback(&self, feedback: &Feedback) -> Result<()>;

    /// The rating of a message, if any.
    async fn feedback(&self, tenant: &TenantId, message: MessageId) -> Result<Option<Feedback>>;

    /// Up to `limit` of the tenant's ratings, newest first.
    async fn list_feedback(&self, tenant: &TenantId, limit: u32) -> Result<Vec<Feedback>>;

    /// Stores a document and replaces all its chunks, in one transaction: if any chunk is
    /// refused, the previous version and its chunks stay as they were.
    ///
    /// A document is known by `(tenant_id, external_id)`. When that pair is already stored,
    /// the stored row keeps its id and takes every other field from `document`; the id under
    /// which the chunks were stored is returned. Every chunk must carry `document.id`.
    /// Costs one statement per 500 chunks on top of three.
    async fn upsert_document(&self, document: &Document, chunks: &[Chunk]) -> Result<DocumentId>;

    /// The tenant's document with this external id.
    async fn document(&self, tenant: &TenantId, external_id: &str) -> Result<Option<Document>>;

    /// All of the tenant's documents, by external id. Not paged: knowledge bases are
    /// thousands of documents, not millions.
    async fn documents(&self, tenant: &TenantId) -> Result<Vec<Document>>;

    /// The document's chunks by ordinal. Not tenant-scoped: document ids come from
    /// tenant-scoped reads.
    async fn chunks(&self, document: DocumentId) -> Result<Vec<Chunk>>;

    /// Deletes the document and its chunks; `false` when there was none.
    async fn delete_document(&self, tenant: &TenantId, external_id: &str) -> Result<bool>;

    /// Stores a new job as given (normally `Queued` with no attempts).
    async fn enqueue_job(&self, job: &Job) -> Result<()>;

    /// The job, if it belongs to `tenant`.
    async fn job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>>;

    /// Claims the queued job with the highest priority, oldest first: it becomes `Running`,
    /// its attempts go up by one and `claimed_by` is `worker`. One statement; concurrent
    /// claimers never get the same job. `None` when the queue is empty.
    async fn claim_job(&self, worker: &str) -> Result<Option<Job>>;

    /// Takes one queued job for `worker`, as [`claim_job`](Self::claim_job) does, but by id:
    /// `None` when it is not queued (taken by another worker, settled, or unknown).
    async fn take_job(&self, id: JobId, worker: &str) -> Result<Option<Job>>;

    /// Up to `limit` queued jobs of every tenant, in the order `claim_job` would take them.
    async fn queued_jobs(&self, limit: u32) -> Result<Vec<Job>>;

    /// Marks a running job `Succeeded` with its result. A job that is not running is a
    /// `Conflict`; an unknown one `NotFound` (telling the two apart costs one more read).
    async fn complete_job(&self, id: JobId, result: &Value) -> Result<()>;

    /// Records a running job's error and either puts it back in the queue (`retry`) or marks
    /// it `Failed`. A job that is not running is a `Conflict`; an unknown one `NotFound`.
    async fn fail_job(&self, id: JobId, error: &str, retry: bool) -> Result<()>;

    /// Puts back in the queue every running job not updated since `older_than` (its worker
    /// presumably died) and returns how many.
    async fn requeue_stale_jobs(&self, older_than: DateTime<Utc>) -> Result<u64>;

    /// Appends one model call to the usage ledger.
    async fn record_usage(&self, usage: &UsageRecord) -> Result<()>;

    /// The tenant's usage since `since` (inclusive), added up in the database.
    async fn usage_summary(&self, tenant: &TenantId, since: DateTime<Utc>) -> Result<UsageSummary>;
}
