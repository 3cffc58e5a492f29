//! Rows as the database returns them, and their conversion into core's types.
//!
//! A row struct holds only types both backends decode (text, integers, times, JSON), so
//! the same struct serves SQLite and PostgreSQL; parsing text into ids and enums happens
//! here, once, and a value that does not parse is reported as [`StoreError::Corrupt`].

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use concierge_core::{
    ApiKeyRecord, Approval, Checkpoint, Chunk, Conversation, ConversationId, Document, Feedback, Job, Message, Tenant,
    Ticket, ToolCallRecord,
};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Result, StoreError};

/// `t` truncated to the microsecond, the precision PostgreSQL keeps. Every time the store
/// writes goes through here, so both backends hand back the same values.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The current time as the store records it.
pub(crate) fn now() -> DateTime<Utc> {
    micros(concierge_core::now())
}

/// Parses the text of `column` into its domain type.
pub(crate) fn parse<T>(column: &str, text: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse().map_err(|err| StoreError::corrupt(column, err))
}

fn parse_optional<T>(column: &str, text: Option<String>) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    text.map(|text| parse(column, &text)).transpose()
}

/// Converts an optional row into its domain type.
pub(crate) fn decode_one<R, T>(row: Option<R>) -> Result<Option<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    row.map(T::try_from).transpose()
}

/// Converts rows into their domain type, failing on the first that does not decode.
pub(crate) fn decode_all<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: String,
    name: String,
    tier: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(row: TenantRow) -> Result<Self> {
        Ok(Self { id: parse("tenants.id", &row.id)?, name: row.name, tier: row.tier, created_at: row.created_at })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    prefix: String,
    tenant_id: String,
    role: String,
    secret_hash: String,
    label: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;
    fn try_from(row: ApiKeyRow) -> Result<Self> {
        Ok(Self {
            tenant_id: parse("api_keys.tenant_id", &row.tenant_id)?,
            role: parse("api_keys.role", &row.role)?,
            prefix: row.prefix,
            secret_hash: row.secret_hash,
            label: row.label,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow {
    id: String,
    tenant_id: String,
    customer_ref: Option<String>,
    channel: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;
    fn try_from(row: ConversationRow) -> Result<Self> {
        Ok(Self {
            id: parse("conversations.id", &row.id)?,
            tenant_id: parse("conversations.tenant_id", &row.tenant_id)?,
            status: parse("conversations.status", &row.status)?,
            customer_ref: row.customer_ref,
            channel: row.channel,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: String,
    conversation_id: String,
    tenant_id: String,
    seq: i64,
    role: String,
    content: String,
    metadata: Json<Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(row: MessageRow) -> Result<Self> {
        Ok(Self {
            id: parse("messages.id", &row.id)?,
            conversation_id: parse("messages.conversation_id", &row.conversation_id)?,
            tenant_id: parse("messages.tenant_id", &row.tenant_id)?,
            role: parse("messages.role", &row.role)?,
            seq: row.seq,
            content: row.content,
            metadata: row.metadata.0,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    run_id: String,
    conversation_id: String,
    tenant_id: String,
    step: i64,
    node: String,
    state: Json<Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<CheckpointRow> for Checkpoint {
    type Error = StoreError;
    fn try_from(row: CheckpointRow) -> Result<Self> {
        Ok(Self {
            conversation_id: parse("checkpoints.conversation_id", &row.conversation_id)?,
            tenant_id: parse("checkpoints.tenant_id", &row.tenant_id)?,
            run_id: row.run_id,
            step: row.step,
            node: row.node,
            state: row.state.0,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ToolCallRow {
    idempotency_key: String,
    tenant_id: String,
    conversation_id: Option<String>,
    tool: String,
    arguments: Json<Value>,
    result: Option<Json<Value>>,
    outcome: String,
    latency_ms: i64,
    approved_by: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ToolCallRow> for ToolCallRecord {
    type Error = StoreError;
    fn try_from(row: ToolCallRow) -> Result<Self> {
        Ok(Self {
            tenant_id: parse("tool_calls.tenant_id", &row.tenant_id)?,
            conversation_id: parse_optional::<ConversationId>("tool_calls.conversation_id", row.conversation_id)?,
            outcome: parse("tool_calls.outcome", &row.outcome)?,
            idempotency_key: row.idempotency_key,
            tool: row.tool,
            arguments: row.arguments.0,
            result: row.result.map(|json| json.0),
            latency_ms: row.latency_ms,
            approved_by: row.approved_by,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TicketRow {
    id: String,
    tenant_id: String,
    conversation_id: Option<String>,
    subject: String,
    summary: String,
    priority: String,
    status: String,
    external_ref: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;
    fn try_from(row: TicketRow) -> Result<Self> {
        Ok(Self {
            id: parse("tickets.id", &row.id)?,
            tenant_id: parse("tickets.tenant_id", &row.tenant_id)?,
            conversation_id: parse_optional("tickets.conversation_id", row.conversation_id)?,
            priority: parse("tickets.priority", &row.priority)?,
            status: parse("tickets.status", &row.status)?,
            subject: row.subject,
            summary: row.summary,
            external_ref: row.external_ref,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApprovalRow {
    id: String,
    tenant_id: String,
    conversation_id: String,
    tool: String,
    arguments: Json<Value>,
    status: String,
    requested_at: DateTime<Utc>,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    run_id: String,
    expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApprovalRow> for Approval {
    type Error = StoreError;
    fn try_from(row: ApprovalRow) -> Result<Self> {
        Ok(Self {
            id: parse("approvals.id", &row.id)?,
            tenant_id: parse("approvals.tenant_id", &row.tenant_id)?,
            conversation_id: parse("approvals.conversation_id", &row.conversation_id)?,
            status: parse("approvals.status", &row.status)?,
            run_id: row.run_id,
            tool: row.tool,
            arguments: row.arguments.0,
            requested_at: row.requested_at,
            expires_at: row.expires_at,
            decided_by: row.decided_by,
            decided_at: row.decided_at,
            reason: row.reason,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct FeedbackRow {
    message_id: String,
    tenant_id: String,
    conversation_id: String,
    rating: i16,
    comment: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<FeedbackRow> for Feedback {
    type Error = StoreError;
    fn try_from(row: FeedbackRow) -> Result<Self> {
        Ok(Self {
            message_id: parse("feedback.message_id", &row.message_id)?,
            tenant_id: parse("feedback.tenant_id", &row.tenant_id)?,
            conversation_id: parse("feedback.conversation_id", &row.conversation_id)?,
            rating: row.rating,
            comment: row.comment,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DocumentRow {
    id: String,
    tenant_id: String,
    external_id: String,
    title: String,
    url: Option<String>,
    metadata: Json<Value>,
    content_hash: String,
    version: i64,
    updated_at: DateTime<Utc>,
}

impl TryFrom<DocumentRow> for Document {
    type Error = StoreError;
    fn try_from(row: DocumentRow) -> Result<Self> {
        Ok(Self {
            id: parse("documents.id", &row.id)?,
            tenant_id: parse("documents.tenant_id", &row.tenant_id)?,
            external_id: row.external_id,
            title: row.title,
            url: row.url,
            metadata: row.metadata.0,
            content_hash: row.content_hash,
            version: row.version,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChunkRow {
    document_id: String,
    ordinal: i64,
    parent: Option<i64>,
    heading: String,
    text: String,
    token_count: i64,
}

impl TryFrom<ChunkRow> for Chunk {
    type Error = StoreError;
    fn try_from(row: ChunkRow) -> Result<Self> {
        Ok(Self {
            document_id: parse("chunks.document_id", &row.document_id)?,
            ordinal: row.ordinal,
            parent: row.parent,
            heading: row.heading,
            text: row.text,
            token_count: row.token_count,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: String,
    tenant_id: String,
    kind: String,
    payload: Json<Value>,
    priority: i32,
    state: String,
    attempts: i32,
    result: Option<Json<Value>>,
    error: Option<String>,
    claimed_by: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(row: JobRow) -> Result<Self> {
        Ok(Self {
            id: parse("jobs.id", &row.id)?,
            tenant_id: parse("jobs.tenant_id", &row.tenant_id)?,
            state: parse("jobs.state", &row.state)?,
            kind: row.kind,
            payload: row.payload.0,
            priority: row.priority,
            attempts: row.attempts,
            result: row.result.map(|json| json.0),
            error: row.error,
            claimed_by: row.claimed_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn conversation_row(status: &str) -> ConversationRow {
        let at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        ConversationRow {
            id: ConversationId::new().to_string(),
            tenant_id: "acme".into(),
            customer_ref: None,
            channel: "web".into(),
            status: status.into(),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_row_with_an_unknown_enum_value_is_corrupt_and_names_the_column() {
        let err = Conversation::try_from(conversation_row("archived")).unwrap_err();
        match err {
            StoreError::Corrupt(text) => {
                assert!(text.starts_with("conversations.status:"), "{text}");
                assert!(text.contains("archived"), "{text}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(Conversation::try_from(conversation_row("open")).is_ok());
    }

    #[test]
    fn stored_times_are_truncated_to_the_microsecond() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
