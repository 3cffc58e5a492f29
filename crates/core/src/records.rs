//! The records Concierge keeps: one struct per table of the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ApprovalId, ConversationId, DocumentId, JobId, MessageId, TenantId, TicketId};

/// Declares a string-valued enum with its stable wire/storage names, so the same spelling
/// is used in JSON, in the database and in error messages.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name stored in the database and sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{}` (expected one of: {})",
                        stringify!($name), other, [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// Who wrote a message.
    Role { User => "user", Assistant => "assistant", System => "system", Tool => "tool", Operator => "operator" }
);
named_enum!(
    /// Whether a conversation is still being handled by Concierge.
    ConversationStatus { Open => "open", Escalated => "escalated", Closed => "closed" }
);
named_enum!(
    /// What an API key may do.
    ApiRole { Widget => "widget", Operator => "operator", Admin => "admin" }
);
named_enum!(
    /// The life of a ticket handed to a human.
    TicketStatus { Open => "open", Pending => "pending", Solved => "solved", Closed => "closed" }
);
named_enum!(
    TicketPriority { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" }
);
named_enum!(
    /// A human decision on a risky tool call.
    ApprovalStatus { Pending => "pending", Approved => "approved", Denied => "denied", Expired => "expired" }
);
named_enum!(
    /// How a tool call ended.
    ToolCallOutcome { Ok => "ok", Error => "error", Timeout => "timeout", Rejected => "rejected" }
);
named_enum!(
    /// The life of an asynchronous job.
    JobState { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed" }
);

/// One company served by this Concierge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// Service tier, used by rate limits and job priority (e.g. `free`, `premium`).
    pub tier: String,
    pub created_at: DateTime<Utc>,
}

/// A stored API key. Only a hash of the secret is kept; `prefix` is the public, unique part
/// used to find the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyRecord {
    pub prefix: String,
    pub tenant_id: TenantId,
    pub role: ApiRole,
    pub secret_hash: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    pub id: ConversationId,
    pub tenant_id: TenantId,
    /// The company's own reference for the customer, if known (e.g. a customer id).
    pub customer_ref: Option<String>,
    /// Where the conversation came from: `api`, `web`, `ws`, …
    pub channel: String,
    pub status: ConversationStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One message of a conversation. `seq` orders messages within their conversation; the
/// store assigns it, so concurrent writers never produce two messages with the same place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub tenant_id: TenantId,
    pub seq: i64,
    pub role: Role,
    pub content: String,
    /// Structured extras: citations, intent, tool names, latency.
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
}

/// The state of a graph run after one step, so the run can resume after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkpoint {
    pub run_id: String,
    pub conversation_id: ConversationId,
    pub tenant_id: TenantId,
    pub step: i64,
    pub node: String,
    pub state: Value,
    pub created_at: DateTime<Utc>,
}

/// One tool call, as kept in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolCallRecord {
    /// Derived from (conversation, turn, step) so a resumed run never repeats a side effect.
    pub idempotency_key: String,
    pub tenant_id: TenantId,
    pub conversation_id: Option<ConversationId>,
    pub tool: String,
    pub arguments: Value,
    pub result: Option<Value>,
    pub outcome: ToolCallOutcome,
    pub latency_ms: i64,
    pub approved_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ticket {
    pub id: TicketId,
    pub tenant_id: TenantId,
    pub conversation_id: Option<ConversationId>,
    pub subject: String,
    pub summary: String,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    /// The ticket's id in the company's own helpdesk, once it has been created there.
    pub external_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    pub id: ApprovalId,
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    /// The paused graph run that waits on this decision (empty for approvals made before
    /// runs were recorded).
    pub run_id: String,
    pub tool: String,
    pub arguments: Value,
    pub status: ApprovalStatus,
    pub requested_at: DateTime<Utc>,
    /// After it, the approval can no longer be decided and counts as expired.
    pub expires_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// A customer's rating of one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Feedback {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    /// +1 thumbs up, -1 thumbs down.
    pub rating: i16,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A knowledge-base document. `external_id` is the company's own id (e.g. an article slug),
/// unique per tenant; `content_hash` lets re-ingestion skip unchanged documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Document {
    pub id: DocumentId,
    pub tenant_id: TenantId,
    pub external_id: String,
    pub title: String,
    pub url: Option<String>,
    pub metadata: Value,
    pub content_hash: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// A searchable piece of a document. `parent` is the index of the section chunk this one
/// belongs to, when chunks are nested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chunk {
    pub document_id: DocumentId,
    pub ordinal: i64,
    pub parent: Option<i64>,
    pub heading: String,
    pub text: String,
    pub token_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: String,
    pub payload: Value,
    /// Higher runs first.
    pub priority: i32,
    pub state: JobState,
    pub attempts: i32,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub claimed_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Tokens and cost of one model call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageRecord {
    pub tenant_id: TenantId,
    pub conversation_id: Option<ConversationId>,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// In millionths of a US dollar, so sums are exact.
    pub cost_micros: i64,
    pub created_at: DateTime<Utc>,
}

/// Usage added up over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageSummary {
    pub calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_round_trip_through_text_and_json() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
            assert_eq!(serde_json::to_value(role).unwrap(), serde_json::json!(role.as_str()));
        }
        let err = "robot".parse::<Role>().unwrap_err();
        assert!(err.contains("expected one of: user, assistant"), "{err}");
    }
}
