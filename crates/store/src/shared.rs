//! The body of [`Store`](crate::Store), written once for every sqlx backend.
//!
//! sqlx's query API is the same for SQLite and PostgreSQL but its types are not, so the
//! implementation is a macro that each backend instantiates for its pool type. The SQL is
//! the dialect both databases share: `$N` placeholders, `RETURNING`, `ON CONFLICT … DO
//! UPDATE`, row values. Ids, tenant ids and enums are bound as text, times as
//! `DateTime<Utc>` (TEXT in SQLite, TIMESTAMPTZ in PostgreSQL) and JSON as `Json` (TEXT,
//! JSONB), so one set of binds suits both.
//!
//! Where the dialects really differ, the backend passes the clause in:
//! - `begin_write` opens a transaction that will write. SQLite must take its write lock
//!   up front (`BEGIN IMMEDIATE`): a deferred transaction that reads, then writes, cannot
//!   wait for the lock and fails with SQLITE_BUSY instead.
//! - `lock_row` locks the rows a `SELECT` returns until the transaction ends (`FOR
//!   UPDATE`). SQLite has no row locks and needs none: its write transaction already
//!   excludes every other writer.
//! - `skip_locked` lets concurrent job claimers pass over a row another claimer holds.
//!
//! The backend type must have a `pool: sqlx::Pool<$db>` field and an inherent
//! `async fn run_migrations(&self) -> Result<()>`.

/// Rows per `INSERT` when writing chunks: far below SQLite's 32,766 bound parameters (six
/// per chunk) and PostgreSQL's 65,535, while few statements are needed per document.
pub(crate) const CHUNKS_PER_STATEMENT: usize = 500;

macro_rules! impl_store {
    (
        store: $store:ty,
        db: $db:ty,
        backend: $backend:literal,
        begin_write: $begin_write:literal,
        lock_row: $lock_row:literal,
        skip_locked: $skip_locked:literal $(,)?
    ) => {
        impl $store {
            /// Sets the status of one tenant-scoped row of `table` and bumps its
            /// `updated_at`; `NotFound` names `what` when no such row exists.
            async fn update_status(
                &self,
                table: &'static str,
                what: &'static str,
                tenant: &concierge_core::TenantId,
                id: String,
                status: &'static str,
            ) -> $crate::Result<()> {
                // `table` is one of this file's literals, never input.
                let sql = format!("UPDATE {table} SET status = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2");
                let done = sqlx::query(&sql)
                    .bind(tenant.as_str())
                    .bind(&id)
                    .bind(status)
                    .bind($crate::rows::now())
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::not_found(format!("{what} {id} of tenant {tenant}")));
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> $crate::Result<()> {
                self.run_migrations().await
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            // ---- tenants ---------------------------------------------------------------

            async fn upsert_tenant(&self, tenant: &concierge_core::Tenant) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO tenants (id, name, tier, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, tier = excluded.tier",
                )
                .bind(tenant.id.as_str())
                .bind(&tenant.name)
                .bind(&tenant.tier)
                .bind($crate::rows::micros(tenant.created_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn tenant(
                &self,
                id: &concierge_core::TenantId,
            ) -> $crate::Result<Option<concierge_core::Tenant>> {
                let row = sqlx::query_as::<_, $crate::rows::TenantRow>("SELECT * FROM tenants WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                $crate::rows::decode_one(row)
            }

            // ---- api keys --------------------------------------------------------------

            async fn insert_api_key(&self, key: &concierge_core::ApiKeyRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO api_keys (prefix, tenant_id, role, secret_hash, label, created_at, revoked_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&key.prefix)
                .bind(key.tenant_id.as_str())
                .bind(key.role.as_str())
                .bind(&key.secret_hash)
                .bind(&key.label)
                .bind($crate::rows::micros(key.created_at))
                .bind(key.revoked_at.map($crate::rows::micros))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn api_key(&self, prefix: &str) -> $crate::Result<Option<concierge_core::ApiKeyRecord>> {
                let row = sqlx::query_as::<_, $crate::rows::ApiKeyRow>("SELECT * FROM api_keys WHERE prefix = $1")
                    .bind(prefix)
                    .fetch_optional(&self.pool)
                    .await?;
                $crate::rows::decode_one(row)
            }

            async fn api_keys(&self, tenant: &concierge_core::TenantId) -> $crate::Result<Vec<concierge_core::ApiKeyRecord>> {
                let rows = sqlx::query_as::<_, $crate::rows::ApiKeyRow>(
                    "SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, prefix",
                )
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn revoke_api_key(&self, prefix: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE prefix = $1")
                    .bind(prefix)
                    .bind($crate::rows::micros(at))
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::not_found(format!("api key with prefix `{prefix}`")));
                }
                Ok(())
            }

            // ---- conversations ---------------------------------------------------------

            async fn create_conversation(&self, conversation: &concierge_core::Conversation) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO conversations (id, tenant_id, customer_ref, channel, status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(conversation.id.to_string())
                .bind(conversation.tenant_id.as_str())
                .bind(conversation.customer_ref.as_deref())
                .bind(&conversation.channel)
                .bind(conversation.status.as_str())
                .bind($crate::rows::micros(conversation.created_at))
                .bind($crate::rows::micros(conversation.updated_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn conversation(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::ConversationId,
            ) -> $crate::Result<Option<concierge_core::Conversation>> {
                let row = sqlx::query_as::<_, $crate::rows::ConversationRow>(
                    "SELECT * FROM conversations WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn set_conversation_status(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::ConversationId,
                status: concierge_core::ConversationStatus,
            ) -> $crate::Result<()> {
                self.update_status("conversations", "conversation", tenant, id.to_string(), status.as_str()).await
            }

            async fn list_conversations(
                &self,
                tenant: &concierge_core::TenantId,
                limit: u32,
                before: Option<concierge_core::ConversationId>,
            ) -> $crate::Result<Vec<concierge_core::Conversation>> {
                // Keyset paging on (created_at, id): stable while new conversations arrive,
                // and served by the (tenant_id, created_at, id) index at any depth.
                let rows = sqlx::query_as::<_, $crate::rows::ConversationRow>(
                    "SELECT * FROM conversations
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR (created_at, id) <
                            (SELECT created_at, id FROM conversations WHERE tenant_id = $1 AND id = $2))
                     ORDER BY created_at DESC, id DESC
                     LIMIT $3",
                )
                .bind(tenant.as_str())
                .bind(before.map(|id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            // ---- messages --------------------------------------------------------------

            async fn append_message(&self, message: $crate::NewMessage) -> $crate::Result<concierge_core::Message> {
                let conversation_id = message.conversation_id.to_string();
                let mut tx = self.pool.begin_with($begin_write).await?;
                // Lock the conversation before reading its last seq: concurrent appends queue
                // here, so each sees the previous one's message. The lock also proves the
                // conversation belongs to the tenant.
                let found = sqlx::query(concat!(
                    "SELECT id FROM conversations WHERE tenant_id = $1 AND id = $2 ",
                    $lock_row
                ))
                .bind(message.tenant_id.as_str())
                .bind(&conversation_id)
                .fetch_optional(&mut *tx)
                .await?;
                if found.is_none() {
                    return Err($crate::StoreError::not_found(format!(
                        "conversation {} of tenant {}",
                        message.conversation_id, message.tenant_id
                    )));
                }
                // Read the clock under the lock, so created_at never decreases along seq.
                let created_at = $crate::rows::now();
                let seq = sqlx::query_scalar::<_, i64>(
                    "INSERT INTO messages (id, conversation_id, tenant_id, seq, role, content, metadata, created_at)
                     SELECT $1, $2, $3, COALESCE(MAX(seq), 0) + 1, $4, $5, $6, $7
                     FROM messages WHERE conversation_id = $2
                     RETURNING seq",
                )
                .bind(message.id.to_string())
                .bind(&conversation_id)
                .bind(message.tenant_id.as_str())
                .bind(message.role.as_str())
                .bind(&message.content)
                .bind(sqlx::types::Json(&message.metadata))
                .bind(created_at)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1")
                    .bind(&conversation_id)
                    .bind(created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(concierge_core::Message {
                    id: message.id,
                    conversation_id: message.conversation_id,
                    tenant_id: message.tenant_id,
                    seq,
                    role: message.role,
                    content: message.content,
                    metadata: message.metadata,
                    created_at,
                })
            }

            async fn messages(
                &self,
                tenant: &concierge_core::TenantId,
                conversation: concierge_core::ConversationId,
            ) -> $crate::Result<Vec<concierge_core::Message>> {
                let rows = sqlx::query_as::<_, $crate::rows::MessageRow>(
                    "SELECT * FROM messages WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY seq",
                )
                .bind(tenant.as_str())
                .bind(conversation.to_string())
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn message(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::MessageId,
            ) -> $crate::Result<Option<concierge_core::Message>> {
                let row = sqlx::query_as::<_, $crate::rows::MessageRow>(
                    "SELECT * FROM messages WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            // ---- checkpoints -----------------------------------------------------------

            async fn put_checkpoint(&self, checkpoint: &concierge_core::Checkpoint) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO checkpoints (run_id, conversation_id, tenant_id, step, node, state, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&checkpoint.run_id)
                .bind(checkpoint.conversation_id.to_string())
                .bind(checkpoint.tenant_id.as_str())
                .bind(checkpoint.step)
                .bind(&checkpoint.node)
                .bind(sqlx::types::Json(&checkpoint.state))
                .bind($crate::rows::micros(checkpoint.created_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn latest_checkpoint(&self, run_id: &str) -> $crate::Result<Option<concierge_core::Checkpoint>> {
                let row = sqlx::query_as::<_, $crate::rows::CheckpointRow>(
                    "SELECT * FROM checkpoints WHERE run_id = $1 ORDER BY step DESC LIMIT 1",
                )
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            // ---- tool-call audit log ---------------------------------------------------

            async fn record_tool_call(&self, call: &concierge_core::ToolCallRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO tool_calls (idempotency_key, tenant_id, conversation_id, tool, arguments,
                                             result, outcome, latency_ms, approved_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&call.idempotency_key)
                .bind(call.tenant_id.as_str())
                .bind(call.conversation_id.map(|id| id.to_string()))
                .bind(&call.tool)
                .bind(sqlx::types::Json(&call.arguments))
                .bind(call.result.as_ref().map(sqlx::types::Json))
                .bind(call.outcome.as_str())
                .bind(call.latency_ms)
                .bind(call.approved_by.as_deref())
                .bind($crate::rows::micros(call.created_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn tool_call(&self, idempotency_key: &str) -> $crate::Result<Option<concierge_core::ToolCallRecord>> {
                let row = sqlx::query_as::<_, $crate::rows::ToolCallRow>(
                    "SELECT * FROM tool_calls WHERE idempotency_key = $1",
                )
                .bind(idempotency_key)
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn tool_calls(
                &self,
                tenant: &concierge_core::TenantId,
                conversation: concierge_core::ConversationId,
            ) -> $crate::Result<Vec<concierge_core::ToolCallRecord>> {
                let rows = sqlx::query_as::<_, $crate::rows::ToolCallRow>(
                    "SELECT * FROM tool_calls WHERE tenant_id = $1 AND conversation_id = $2
                     ORDER BY created_at, idempotency_key",
                )
                .bind(tenant.as_str())
                .bind(conversation.to_string())
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            // ---- tickets ---------------------------------------------------------------

            async fn create_ticket(&self, ticket: &concierge_core::Ticket) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO tickets (id, tenant_id, conversation_id, subject, summary, priority, status,
                                          external_ref, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(ticket.id.to_string())
                .bind(ticket.tenant_id.as_str())
                .bind(ticket.conversation_id.map(|id| id.to_string()))
                .bind(&ticket.subject)
                .bind(&ticket.summary)
                .bind(ticket.priority.as_str())
                .bind(ticket.status.as_str())
                .bind(ticket.external_ref.as_deref())
                .bind($crate::rows::micros(ticket.created_at))
                .bind($crate::rows::micros(ticket.updated_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn ticket(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::TicketId,
            ) -> $crate::Result<Option<concierge_core::Ticket>> {
                let row = sqlx::query_as::<_, $crate::rows::TicketRow>(
                    "SELECT * FROM tickets WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn list_tickets(
                &self,
                tenant: &concierge_core::TenantId,
                status: Option<concierge_core::TicketStatus>,
                limit: u32,
            ) -> $crate::Result<Vec<concierge_core::Ticket>> {
                let rows = sqlx::query_as::<_, $crate::rows::TicketRow>(
                    "SELECT * FROM tickets
                     WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2)
                     ORDER BY created_at DESC, id DESC
                     LIMIT $3",
                )
                .bind(tenant.as_str())
                .bind(status.map(|status| status.as_str()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn set_ticket_status(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::TicketId,
                status: concierge_core::TicketStatus,
            ) -> $crate::Result<()> {
                self.update_status("tickets", "ticket", tenant, id.to_string(), status.as_str()).await
            }

            // ---- approvals -------------------------------------------------------------

            async fn create_approval(&self, approval: &concierge_core::Approval) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO approvals (id, tenant_id, conversation_id, tool, arguments, status,
                                            requested_at, decided_by, decided_at, reason, run_id, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(approval.id.to_string())
                .bind(approval.tenant_id.as_str())
                .bind(approval.conversation_id.to_string())
                .bind(&approval.tool)
                .bind(sqlx::types::Json(&approval.arguments))
                .bind(approval.status.as_str())
                .bind($crate::rows::micros(approval.requested_at))
                .bind(approval.decided_by.as_deref())
                .bind(approval.decided_at.map($crate::rows::micros))
                .bind(approval.reason.as_deref())
                .bind(&approval.run_id)
                .bind(approval.expires_at.map($crate::rows::micros))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn approval(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::ApprovalId,
            ) -> $crate::Result<Option<concierge_core::Approval>> {
                let row = sqlx::query_as::<_, $crate::rows::ApprovalRow>(
                    "SELECT * FROM approvals WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn pending_approvals(
                &self,
                tenant: &concierge_core::TenantId,
            ) -> $crate::Result<Vec<concierge_core::Approval>> {
                let rows = sqlx::query_as::<_, $crate::rows::ApprovalRow>(
                    "SELECT * FROM approvals WHERE tenant_id = $1 AND status = 'pending'
                     ORDER BY requested_at, id",
                )
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn decide_approval(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::ApprovalId,
                approved: bool,
                by: &str,
                reason: Option<&str>,
            ) -> $crate::Result<concierge_core::Approval> {
                let status = if approved {
                    concierge_core::ApprovalStatus::Approved
                } else {
                    concierge_core::ApprovalStatus::Denied
                };
                // Past its deadline a pending approval becomes expired instead (timestamps
                // are compared here, not in SQL: SQLite keeps them as text).
                let now = $crate::rows::now();
                if let Some(current) = self.approval(tenant, id).await? {
                    let lapsed = current.expires_at.is_some_and(|deadline| deadline <= now);
                    if lapsed && current.status == concierge_core::ApprovalStatus::Pending {
                        sqlx::query(
                            "UPDATE approvals SET status = 'expired', decided_at = $3
                             WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
                        )
                        .bind(tenant.as_str())
                        .bind(id.to_string())
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                        return Err($crate::StoreError::conflict(format!("approval {id} is expired")));
                    }
                }
                // Check and set in one statement: the database decides which of two
                // concurrent deciders matched `status = 'pending'`.
                let row = sqlx::query_as::<_, $crate::rows::ApprovalRow>(
                    "UPDATE approvals SET status = $3, decided_by = $4, decided_at = $5, reason = $6
                     WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
                     RETURNING *",
                )
                .bind(tenant.as_str())
                .bind(id.to_string())
                .bind(status.as_str())
                .bind(by)
                .bind(now)
                .bind(reason)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(row) => row.try_into(),
                    None => Err(match self.approval(tenant, id).await? {
                        Some(approval) => $crate::StoreError::conflict(format!(
                            "approval {id} is already {}",
                            approval.status
                        )),
                        None => $crate::StoreError::not_found(format!("approval {id} of tenant {tenant}")),
                    }),
                }
            }

            // ---- feedback --------------------------------------------------------------

            async fn add_feedback(&self, feedback: &concierge_core::Feedback) -> $crate::Result<()> {
                // A new rating replaces the old one, but only from the message's own tenant:
                // the WHERE makes a cross-tenant upsert change nothing, reported as NotFound.
                let done = sqlx::query(
                    "INSERT INTO feedback (message_id, tenant_id, conversation_id, rating, comment, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (message_id) DO UPDATE
                        SET rating = excluded.rating, comment = excluded.comment, created_at = excluded.created_at
                        WHERE feedback.tenant_id = excluded.tenant_id
                          AND feedback.conversation_id = excluded.conversation_id",
                )
                .bind(feedback.message_id.to_string())
                .bind(feedback.tenant_id.as_str())
                .bind(feedback.conversation_id.to_string())
                .bind(feedback.rating)
                .bind(feedback.comment.as_deref())
                .bind($crate::rows::micros(feedback.created_at))
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::not_found(format!(
                        "message {} in conversation {} of tenant {}",
                        feedback.message_id, feedback.conversation_id, feedback.tenant_id
                    )));
                }
                Ok(())
            }

            async fn list_feedback(
                &self,
                tenant: &concierge_core::TenantId,
                limit: u32,
            ) -> $crate::Result<Vec<concierge_core::Feedback>> {
                let rows = sqlx::query_as::<_, $crate::rows::FeedbackRow>(
                    "SELECT * FROM feedback WHERE tenant_id = $1 ORDER BY created_at DESC, message_id DESC LIMIT $2",
                )
                .bind(tenant.as_str())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn feedback(
                &self,
                tenant: &concierge_core::TenantId,
                message: concierge_core::MessageId,
            ) -> $crate::Result<Option<concierge_core::Feedback>> {
                let row = sqlx::query_as::<_, $crate::rows::FeedbackRow>(
                    "SELECT * FROM feedback WHERE tenant_id = $1 AND message_id = $2",
                )
                .bind(tenant.as_str())
                .bind(message.to_string())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            // ---- documents -------------------------------------------------------------

            async fn upsert_document(
                &self,
                document: &concierge_core::Document,
                chunks: &[concierge_core::Chunk],
            ) -> $crate::Result<concierge_core::DocumentId> {
                if let Some(stray) = chunks.iter().find(|chunk| chunk.document_id != document.id) {
                    return Err($crate::StoreError::Other(format!(
                        "chunk {} belongs to document {}, not to {} (`{}`)",
                        stray.ordinal, stray.document_id, document.id, document.external_id
                    )));
                }
                let mut tx = self.pool.begin_with($begin_write).await?;
                // The upsert locks the document row, so concurrent re-ingestions of one
                // document queue here instead of interleaving their chunks.
                let stored = sqlx::query_scalar::<_, String>(
                    "INSERT INTO documents (id, tenant_id, external_id, title, url, metadata, content_hash,
                                            version, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (tenant_id, external_id) DO UPDATE
                        SET title = excluded.title, url = excluded.url, metadata = excluded.metadata,
                            content_hash = excluded.content_hash, version = excluded.version,
                            updated_at = excluded.updated_at
                     RETURNING id",
                )
                .bind(document.id.to_string())
                .bind(document.tenant_id.as_str())
                .bind(&document.external_id)
                .bind(&document.title)
                .bind(document.url.as_deref())
                .bind(sqlx::types::Json(&document.metadata))
                .bind(&document.content_hash)
                .bind(document.version)
                .bind($crate::rows::micros(document.updated_at))
                .fetch_one(&mut *tx)
                .await?;
                let stored_id: concierge_core::DocumentId = $crate::rows::parse("documents.id", &stored)?;
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(&stored)
                    .execute(&mut *tx)
                    .await?;
                for batch in chunks.chunks($crate::shared::CHUNKS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO chunks (document_id, ordinal, parent, heading, text, token_count) ",
                    );
                    insert.push_values(batch, |mut row, chunk| {
                        row.push_bind(stored.as_str())
                            .push_bind(chunk.ordinal)
                            .push_bind(chunk.parent)
                            .push_bind(chunk.heading.as_str())
                            .push_bind(chunk.text.as_str())
                            .push_bind(chunk.token_count);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(stored_id)
            }

            async fn document(
                &self,
                tenant: &concierge_core::TenantId,
                external_id: &str,
            ) -> $crate::Result<Option<concierge_core::Document>> {
                let row = sqlx::query_as::<_, $crate::rows::DocumentRow>(
                    "SELECT * FROM documents WHERE tenant_id = $1 AND external_id = $2",
                )
                .bind(tenant.as_str())
                .bind(external_id)
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn documents(
                &self,
                tenant: &concierge_core::TenantId,
            ) -> $crate::Result<Vec<concierge_core::Document>> {
                let rows = sqlx::query_as::<_, $crate::rows::DocumentRow>(
                    "SELECT * FROM documents WHERE tenant_id = $1 ORDER BY external_id",
                )
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn chunks(
                &self,
                document: concierge_core::DocumentId,
            ) -> $crate::Result<Vec<concierge_core::Chunk>> {
                let rows = sqlx::query_as::<_, $crate::rows::ChunkRow>(
                    "SELECT * FROM chunks WHERE document_id = $1 ORDER BY ordinal",
                )
                .bind(document.to_string())
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn delete_document(
                &self,
                tenant: &concierge_core::TenantId,
                external_id: &str,
            ) -> $crate::Result<bool> {
                // Chunks go with it: chunks.document_id is ON DELETE CASCADE.
                let done = sqlx::query("DELETE FROM documents WHERE tenant_id = $1 AND external_id = $2")
                    .bind(tenant.as_str())
                    .bind(external_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            // ---- jobs ------------------------------------------------------------------

            async fn enqueue_job(&self, job: &concierge_core::Job) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO jobs (id, tenant_id, kind, payload, priority, state, attempts, result, error,
                                       claimed_by, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(job.id.to_string())
                .bind(job.tenant_id.as_str())
                .bind(&job.kind)
                .bind(sqlx::types::Json(&job.payload))
                .bind(job.priority)
                .bind(job.state.as_str())
                .bind(job.attempts)
                .bind(job.result.as_ref().map(sqlx::types::Json))
                .bind(job.error.as_deref())
                .bind(job.claimed_by.as_deref())
                .bind($crate::rows::micros(job.created_at))
                .bind($crate::rows::micros(job.updated_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn job(
                &self,
                tenant: &concierge_core::TenantId,
                id: concierge_core::JobId,
            ) -> $crate::Result<Option<concierge_core::Job>> {
                let row = sqlx::query_as::<_, $crate::rows::JobRow>(
                    "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn claim_job(&self, worker: &str) -> $crate::Result<Option<concierge_core::Job>> {
                // One statement: pick and take. `state = 'queued'` is checked again by the
                // UPDATE so a job taken between the pick and the write is never taken twice.
                let row = sqlx::query_as::<_, $crate::rows::JobRow>(concat!(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, claimed_by = $1, updated_at = $2
                     WHERE state = 'queued' AND id = (
                        SELECT id FROM jobs WHERE state = 'queued'
                        ORDER BY priority DESC, created_at, id
                        LIMIT 1 ",
                    $skip_locked,
                    ") RETURNING *"
                ))
                .bind(worker)
                .bind($crate::rows::now())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn take_job(
                &self,
                id: concierge_core::JobId,
                worker: &str,
            ) -> $crate::Result<Option<concierge_core::Job>> {
                let row = sqlx::query_as::<_, $crate::rows::JobRow>(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, claimed_by = $2, updated_at = $3
                     WHERE id = $1 AND state = 'queued' RETURNING *",
                )
                .bind(id.to_string())
                .bind(worker)
                .bind($crate::rows::now())
                .fetch_optional(&self.pool)
                .await?;
                $crate::rows::decode_one(row)
            }

            async fn queued_jobs(&self, limit: u32) -> $crate::Result<Vec<concierge_core::Job>> {
                let rows = sqlx::query_as::<_, $crate::rows::JobRow>(
                    "SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, created_at, id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::decode_all(rows)
            }

            async fn complete_job(&self, id: concierge_core::JobId, result: &serde_json::Value) -> $crate::Result<()> {
                self.settle_job(id, concierge_core::JobState::Succeeded, Some(result), None).await
            }

            async fn fail_job(&self, id: concierge_core::JobId, error: &str, retry: bool) -> $crate::Result<()> {
                let state = if retry {
                    concierge_core::JobState::Queued
                } else {
                    concierge_core::JobState::Failed
                };
                self.settle_job(id, state, None, Some(error)).await
            }

            async fn requeue_stale_jobs(&self, older_than: chrono::DateTime<chrono::Utc>) -> $crate::Result<u64> {
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'queued', updated_at = $2 WHERE state = 'running' AND updated_at < $1",
                )
                .bind($crate::rows::micros(older_than))
                .bind($crate::rows::now())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            // ---- usage -----------------------------------------------------------------

            async fn record_usage(&self, usage: &concierge_core::UsageRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO usage (tenant_id, conversation_id, model, prompt_tokens, completion_tokens,
                                        cost_micros, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(usage.tenant_id.as_str())
                .bind(usage.conversation_id.map(|id| id.to_string()))
                .bind(&usage.model)
                .bind(usage.prompt_tokens)
                .bind(usage.completion_tokens)
                .bind(usage.cost_micros)
                .bind($crate::rows::micros(usage.created_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn usage_summary(
                &self,
                tenant: &concierge_core::TenantId,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<concierge_core::UsageSummary> {
                // PostgreSQL widens SUM(bigint) to numeric; the casts keep one decoding.
                let (calls, prompt_tokens, completion_tokens, cost_micros) =
                    sqlx::query_as::<_, (i64, i64, i64, i64)>(
                        "SELECT COUNT(*),
                                CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT),
                                CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT),
                                CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT)
                         FROM usage WHERE tenant_id = $1 AND created_at >= $2",
                    )
                    .bind(tenant.as_str())
                    .bind($crate::rows::micros(since))
                    .fetch_one(&self.pool)
                    .await?;
                Ok(concierge_core::UsageSummary { calls, prompt_tokens, completion_tokens, cost_micros })
            }
        }

        impl $store {
            /// Moves a running job to `state` with its result or error. A job that is not
            /// running is a conflict: its worker lost it (requeued as stale) or it is done.
            async fn settle_job(
                &self,
                id: concierge_core::JobId,
                state: concierge_core::JobState,
                result: Option<&serde_json::Value>,
                error: Option<&str>,
            ) -> $crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE jobs SET state = $2, result = $3, error = $4, updated_at = $5
                     WHERE id = $1 AND state = 'running'",
                )
                .bind(id.to_string())
                .bind(state.as_str())
                .bind(result.map(sqlx::types::Json))
                .bind(error)
                .bind($crate::rows::now())
                .execute(&self.pool)
                .await?;
                if done.rows_affected() > 0 {
                    return Ok(());
                }
                let current = sqlx::query_scalar::<_, String>("SELECT state FROM jobs WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                Err(match current {
                    Some(current) => $crate::StoreError::conflict(format!("job {id} is {current}, not running")),
                    None => $crate::StoreError::not_found(format!("job {id}")),
                })
            }
        }
    };
}

pub(crate) use impl_store;
