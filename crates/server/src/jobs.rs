//! Asynchronous jobs: a customer message answered in the background.
//!
//! `POST /v1/jobs` checks the message, reserves a place in the queue (a full queue is a 429
//! with `Retry-After`), stores the message and the job, and only then answers 202: a job
//! that was acknowledged is in the store, whatever happens to the process. Workers take
//! jobs from the queue by priority (the tenant's tier), answer the message, and store the
//! result; a job whose turn fails is retried up to `jobs.max_attempts` times. When done, an
//! optional webhook is told, signed with HMAC-SHA256.
//!
//! After a restart, the jobs the store holds queued or running are offered again. Running
//! one again is safe: a message already answered gets that answer back (see
//! [`ConversationService::answer_stored`]), a turn cut short carries on from its
//! checkpoints, and a tool call is keyed by (conversation, turn, step).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_core::{ConversationId, Job, JobId, JobState, MessageId, TenantId};
use concierge_store::{Queue, QueueItem, Store};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::JobsConfig;
use crate::conversation::ConversationService;
use crate::error::ApiError;

/// The kind of job that answers a customer message.
pub const KIND_MESSAGE: &str = "message";
/// How often the store is looked through for queued jobs the queue does not hold.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
const MAX_URL_CHARS: usize = 2_000;

/// Body of `POST /v1/jobs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// `message` (the only kind so far).
    #[serde(default)]
    pub kind: Option<String>,
    /// The conversation to continue; a new one is opened when absent.
    #[serde(default)]
    pub conversation_id: Option<ConversationId>,
    /// For a new conversation: the company's reference for the customer.
    #[serde(default)]
    pub customer_ref: Option<String>,
    pub content: String,
    /// Told when the job is done: a POST of the job, signed (`Concierge-Signature`).
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// What a job carries in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payload {
    conversation_id: ConversationId,
    message_id: MessageId,
    #[serde(default)]
    webhook_url: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: JobId,
    pub kind: String,
    pub state: JobState,
    pub attempts: i32,
    pub priority: i32,
    pub conversation_id: Option<ConversationId>,
    pub message_id: Option<MessageId>,
    pub webhook_url: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let payload: Option<Payload> = serde_json::from_value(job.payload).ok();
        Self {
            id: job.id,
            kind: job.kind,
            state: job.state,
            attempts: job.attempts,
            priority: job.priority,
            conversation_id: payload.as_ref().map(|p| p.conversation_id),
            message_id: payload.as_ref().map(|p| p.message_id),
            webhook_url: payload.and_then(|p| p.webhook_url),
            result: job.result,
            error: job.error,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

pub struct JobService {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    conversations: Arc<ConversationService>,
    config: JobsConfig,
    tenant: TenantId,
    priority: i32,
    webhook_secret: Option<SecretString>,
    http: reqwest::Client,
    /// Moving average of a job's run time, in milliseconds, for `Retry-After`.
    average_ms: AtomicU64,
}

impl JobService {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        conversations: Arc<ConversationService>,
        config: JobsConfig,
        tier: &str,
        webhook_secret: Option<SecretString>,
    ) -> Self {
        let priority = config.tier_priority.get(tier).copied().unwrap_or(0);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.webhook_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let tenant = conversations.tenant().clone();
        Self {
            store,
            queue,
            conversations,
            config,
            tenant,
            priority,
            webhook_secret,
            http,
            average_ms: AtomicU64::new(2_000),
        }
    }

    /// Takes a job: checked, given a place in the queue, stored, then acknowledged.
    pub async fn submit(&self, body: NewJob) -> Result<JobView, ApiError> {
        let kind = body.kind.as_deref().unwrap_or(KIND_MESSAGE);
        if kind != KIND_MESSAGE {
            return Err(ApiError::InvalidBody(format!("kind must be `{KIND_MESSAGE}`")));
        }
        concierge_core::MessageText::parse(&body.content, usize::MAX)?;
        if let Some(url) = &body.webhook_url {
            check_webhook_url(url)?;
            if self.webhook_secret.is_none() {
                return Err(ApiError::InvalidBody(format!(
                    "webhooks are signed, and no secret is set: set {} to use webhook_url",
                    self.config.webhook_secret_env
                )));
            }
        }
        let place = self.queue.reserve().map_err(|_| ApiError::QueueFull { retry_after_secs: self.retry_after() })?;
        let conversation_id = match body.conversation_id {
            Some(id) => id,
            None => self.conversations.create(body.customer_ref, "api").await?.id,
        };
        let message = self.conversations.accept(conversation_id, &body.content).await?;
        let now = concierge_core::now();
        let payload = Payload { conversation_id, message_id: message.id, webhook_url: body.webhook_url };
        let job = Job {
            id: JobId::new(),
            tenant_id: self.tenant.clone(),
            kind: KIND_MESSAGE.into(),
            payload: serde_json::to_value(&payload).map_err(|e| ApiError::Internal(e.to_string()))?,
            priority: self.priority,
            state: JobState::Queued,
            attempts: 0,
            result: None,
            error: None,
            claimed_by: None,
            created_at: now,
            updated_at: now,
        };
        self.store.enqueue_job(&job).await?;
        place.push(QueueItem { job: job.id, priority: job.priority });
        Ok(job.into())
    }

    /// Jobs waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.queue.depth()
    }

    pub async fn get(&self, id: JobId) -> Result<JobView, ApiError> {
        let job = self.store.job(&self.tenant, id).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
        Ok(job.into())
    }

    /// Seconds a refused client should wait: the queue's work spread over the workers.
    fn retry_after(&self) -> u64 {
        let workers = self.config.workers.max(1) as u64;
        let average = self.average_ms.load(Ordering::Relaxed);
        let waiting = self.queue.depth() as u64 + 1;
        (waiting * average / workers / 1000).clamp(1, 300)
    }

    /// Gets the store ready for this process's workers, before anything else answers: a job
    /// still running in the store is one a previous process did not finish (this process's
    /// queue is the only one), so it is queued again. Returns the customer messages the
    /// queued jobs will answer, which nothing else should answer.
    pub async fn prepare(&self) -> Result<std::collections::HashSet<MessageId>, ApiError> {
        let requeued = self.store.requeue_stale_jobs(concierge_core::now()).await?;
        if requeued > 0 {
            tracing::warn!(requeued, "jobs a previous run left running are queued again");
        }
        let queued = self.store.queued_jobs(100_000).await?;
        Ok(queued
            .into_iter()
            .filter_map(|job| serde_json::from_value::<Payload>(job.payload).ok())
            .map(|payload| payload.message_id)
            .collect())
    }

    /// Starts the workers and the sweeper that offers the queue what the store holds: the
    /// jobs a previous process left and any the queue refused. With no workers, jobs are
    /// only taken in.
    pub async fn start(self: &Arc<Self>) {
        if self.config.workers == 0 {
            return;
        }
        self.sweep().await;
        for n in 0..self.config.workers {
            let jobs = Arc::clone(self);
            let name = format!("{}-worker-{n}", std::process::id());
            tokio::spawn(async move { jobs.work(name).await });
        }
        let jobs = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                jobs.sweep().await;
            }
        });
    }

    /// Offers the queue the stored queued jobs it has room for.
    async fn sweep(&self) {
        let room = self.queue.capacity().saturating_sub(self.queue.depth());
        if room == 0 {
            return;
        }
        match self.store.queued_jobs(room.min(1_000) as u32).await {
            Ok(jobs) => {
                for job in jobs {
                    if self.queue.offer(QueueItem { job: job.id, priority: job.priority }).is_err() {
                        break;
                    }
                }
            }
            Err(error) => tracing::error!(%error, "could not read the queued jobs"),
        }
    }

    async fn work(&self, name: String) {
        loop {
            let item = self.queue.pop().await;
            let job = match self.store.take_job(item.job, &name).await {
                Ok(Some(job)) => job,
                // Taken by another worker, or settled: nothing to do.
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(job = %item.job, %error, "could not take a job; it stays queued");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let started = Instant::now();
            self.run(job).await;
            let took = started.elapsed().as_millis() as u64;
            let average = self.average_ms.load(Ordering::Relaxed);
            self.average_ms.store((average * 7 + took) / 8, Ordering::Relaxed);
        }
    }

    async fn run(&self, job: Job) {
        let payload: Payload = match serde_json::from_value(job.payload.clone()) {
            Ok(payload) => payload,
            Err(error) => {
                self.settle(&job, None, Err(format!("the job's payload is not a message job: {error}")), false).await;
                return;
            }
        };
        let answered =
            self.conversations.answer_stored(payload.conversation_id, payload.message_id, job.attempts > 1).await;
        match answered {
            Ok(reply) => {
                let result = json!({ "conversation_id": payload.conversation_id, "reply": reply });
                self.settle(&job, payload.webhook_url.as_deref(), Ok(result), false).await;
            }
            Err(error) => {
                let (status, _) = error.status_and_code();
                // A missing conversation or message will not appear by trying again.
                let retry = status.is_server_error() && job.attempts < self.config.max_attempts;
                tracing::warn!(job = %job.id, attempt = job.attempts, retry, %error, "a job failed");
                self.settle(&job, payload.webhook_url.as_deref(), Err(error.to_string()), retry).await;
            }
        }
    }

    async fn settle(&self, job: &Job, webhook: Option<&str>, outcome: Result<Value, String>, retry: bool) {
        let settled = match &outcome {
            Ok(result) => self.store.complete_job(job.id, result).await,
            Err(error) => self.store.fail_job(job.id, error, retry).await,
        };
        if let Err(error) = settled {
            tracing::error!(job = %job.id, %error, "could not record a job's end; it will be run again");
            return;
        }
        if retry {
            // Refused when full: the sweeper offers it again.
            let _ = self.queue.offer(QueueItem { job: job.id, priority: job.priority });
            return;
        }
        if let (Some(url), Some(secret)) = (webhook, &self.webhook_secret) {
            match self.store.job(&self.tenant, job.id).await {
                Ok(Some(done)) => self.deliver(url, secret, JobView::from(done)).await,
                Ok(None) => {}
                Err(error) => tracing::error!(job = %job.id, %error, "could not read a job for its webhook"),
            }
        }
    }

    /// POSTs the finished job to its webhook, signed; retried with backoff, then given up
    /// (logged: the job itself is settled either way and can be read with GET).
    async fn deliver(&self, url: &str, secret: &SecretString, job: JobView) {
        let event = if job.state == JobState::Succeeded { "job.succeeded" } else { "job.failed" };
        let body = match serde_json::to_vec(&json!({ "event": event, "job": job })) {
            Ok(body) => body,
            Err(error) => return tracing::error!(%error, "could not encode a webhook"),
        };
        for attempt in 1..=self.config.webhook_attempts {
            let timestamp = chrono::Utc::now().timestamp();
            let signature = sign(secret.expose_secret().as_bytes(), timestamp, &body);
            let sent = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("concierge-event", event)
                .header("concierge-signature", format!("t={timestamp},v1={signature}"))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(job = %job.id, attempt, "webhook delivered");
                    return;
                }
                Ok(response) => tracing::warn!(job = %job.id, attempt, status = %response.status(), "webhook refused"),
                Err(error) => tracing::warn!(job = %job.id, attempt, %error, "webhook not delivered"),
            }
            if attempt < self.config.webhook_attempts {
                tokio::time::sleep(Duration::from_millis(500 * 4u64.pow(attempt - 1))).await;
            }
        }
        tracing::error!(job = %job.id, "webhook given up");
    }
}

/// `v1` of `Concierge-Signature`: hex HMAC-SHA256 of `{timestamp}.{body}`. A receiver
/// recomputes it with the shared secret and refuses old timestamps (replays).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn check_webhook_url(url: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| Err(ApiError::InvalidBody(format!("webhook_url {why}")));
    if url.chars().count() > MAX_URL_CHARS {
        return invalid(&format!("is longer than {MAX_URL_CHARS} characters"));
    }
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return invalid("is not a URL");
    };
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return invalid("must be an http or https URL with a host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return invalid("must not carry credentials");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently (Python's hmac module) for key "Jefe" and "1700000000.{}".
        let expected = "d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207";
        assert_eq!(sign(b"Jefe", 1_700_000_000, b"{}"), expected);
        assert_ne!(sign(b"Jefe", 1_700_000_001, b"{}"), expected, "the timestamp is signed");
    }

    #[test]
    fn webhook_urls_are_http_with_a_host_and_no_credentials() {
        assert!(check_webhook_url("https://hooks.example.com/concierge").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9000/done").is_ok());
        for bad in ["ftp://example.com/x", "not a url", "https://user:pw@example.com/", "file:///etc/passwd"] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
        assert!(check_webhook_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS))).is_err());
    }
}
