-- Concierge's schema on PostgreSQL.
--
-- Ids are TEXT, as on SQLite, so both backends bind and decode them the same way: UUIDs
-- in hyphenated form, tenant ids as core validates them. Times are TIMESTAMPTZ, JSON is
-- JSONB. Enums are their stable names, checked here so a typo in a hand-written UPDATE
-- cannot leave a row that no longer decodes.
--
-- Rows that belong to a conversation point at it by (conversation_id, tenant_id), so the
-- schema itself refuses a row whose tenant differs from its conversation's.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    tier       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    prefix      TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    role        TEXT NOT NULL CHECK (role IN ('widget', 'operator', 'admin')),
    secret_hash TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

CREATE TABLE conversations (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    customer_ref TEXT,
    channel      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'escalated', 'closed')),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (id, tenant_id)
);
CREATE INDEX conversations_by_tenant ON conversations (tenant_id, created_at, id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    seq             BIGINT NOT NULL CHECK (seq > 0),
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool', 'operator')),
    content         TEXT NOT NULL,
    metadata        JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (id, conversation_id, tenant_id),
    FOREIGN KEY (conversation_id, tenant_id) REFERENCES conversations (id, tenant_id) ON DELETE CASCADE
);

CREATE TABLE checkpoints (
    run_id          TEXT NOT NULL,
    step            BIGINT NOT NULL,
    conversation_id TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    node            TEXT NOT NULL,
    state           JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, step),
    FOREIGN KEY (conversation_id, tenant_id) REFERENCES conversations (id, tenant_id) ON DELETE CASCADE
);
CREATE INDEX checkpoints_by_conversation ON checkpoints (conversation_id);

CREATE TABLE tool_calls (
    idempotency_key TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    conversation_id TEXT,
    tool            TEXT NOT NULL,
    arguments       JSONB NOT NULL,
    result          JSONB,
    outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'timeout', 'rejected')),
    latency_ms      BIGINT NOT NULL,
    approved_by     TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (conversation_id, tenant_id) REFERENCES conversations (id, tenant_id)
);
CREATE INDEX tool_calls_by_conversation ON tool_calls (tenant_id, conversation_id, created_at);

CREATE TABLE tickets (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    conversation_id TEXT,
    subject         TEXT NOT NULL,
    summary         TEXT NOT NULL,
    priority        TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status          TEXT NOT NULL CHECK (status IN ('open', 'pending', 'solved', 'closed')),
    external_ref    TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (conversation_id, tenant_id) REFERENCES conversations (id, tenant_id)
);
CREATE INDEX tickets_by_tenant ON tickets (tenant_id, created_at, id);
CREATE INDEX tickets_by_tenant_and_status ON tickets (tenant_id, status, created_at, id);

CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    tool            TEXT NOT NULL,
    arguments       JSONB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    requested_at    TIMESTAMPTZ NOT NULL,
    decided_by      TEXT,
    decided_at      TIMESTAMPTZ,
    reason          TEXT,
    FOREIGN KEY (conversation_id, tenant_id) REFERENCES conversations (id, tenant_id)
);
CREATE INDEX approvals_by_tenant_and_status ON approvals (tenant_id, status, requested_at);

CREATE TABLE feedback (
    message_id      TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    rating          SMALLINT NOT NULL CHECK (rating IN (-1, 1)),
    comment         TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (message_id, conversation_id, tenant_id)
        REFERENCES messages (id, conversation_id, tenant_id) ON DELETE CASCADE
);
CREATE INDEX feedback_by_tenant ON feedback (tenant_id, created_at);

CREATE TABLE documents (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    external_id  TEXT NOT NULL,
    title        TEXT NOT NULL,
    url          TEXT,
    metadata     JSONB NOT NULL,
    content_hash TEXT NOT NULL,
    version      BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE chunks (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal     BIGINT NOT NULL,
    parent      BIGINT,
    heading     TEXT NOT NULL,
    text        TEXT NOT NULL,
    token_count BIGINT NOT NULL,
    PRIMARY KEY (document_id, ordinal)
);

CREATE TABLE jobs (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    kind       TEXT NOT NULL,
    payload    JSONB NOT NULL,
    priority   INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts   INTEGER NOT NULL CHECK (attempts >= 0),
    result     JSONB,
    error      TEXT,
    claimed_by TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
-- The queue in claim order, holding only what can be claimed.
CREATE INDEX jobs_queued ON jobs (priority DESC, created_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (updated_at) WHERE state = 'running';

CREATE TABLE usage (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    -- Not a foreign key: the ledger must accept a call whatever became of its conversation.
    conversation_id   TEXT,
    model             TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX usage_by_tenant ON usage (tenant_id, created_at);
