//! Domain types of Concierge: identifiers, tenants, conversations, messages, tickets,
//! approvals, jobs and usage records.
//!
//! Invariant: this crate does no I/O and knows no transport. Every other crate speaks in
//! these types, so a value that exists here has already been validated at the edge
//! ("parse, don't validate").

mod ids;
pub mod metric;
mod records;
mod text;

pub use ids::{ApprovalId, ConversationId, DocumentId, JobId, MessageId, ParseIdError, TenantId, TicketId};
pub use records::{
    ApiKeyRecord, ApiRole, Approval, ApprovalStatus, Checkpoint, Chunk, Conversation, ConversationStatus, Document,
    Feedback, Job, JobState, Message, Role, Tenant, Ticket, TicketPriority, TicketStatus, ToolCallOutcome,
    ToolCallRecord, UsageRecord, UsageSummary,
};
pub use text::{MessageText, TextError};

/// Current time, the one clock every crate uses so tests can reason about ordering.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
