//! Caching around model calls: a byte cache with expiry, an exact-match response cache
//! that is itself a `ChatModel`, and a semantic cache of answers keyed by embeddings.
//!
//! Invariant: a cache only ever serves what a model answered completely. An answer that
//! failed or broke off is never stored, so a hit is indistinguishable from a clean call.
//! A cache is best-effort: its failures never fail a model call.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::model::{ChatModel, EventStream, LlmError};
use crate::types::{ChatEvent, ChatRequest, ChatResponse};

pub use crate::resilience::Clock;

/// The key prefix of `CachedModel`'s entries, so they can be dropped at once with
/// `Cache::delete_prefix` (e.g. after a prompt change) without touching other entries.
pub const EXACT_KEY_PREFIX: &str = "llm:exact:";

/// How often a cache answered, as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing, or only an expired entry.
    pub misses: u64,
    /// Live (unexpired) entries held now.
    pub entries: usize,
}

/// A key-value store of bytes with a time to live per entry; in memory here, Redis in
/// production.
///
/// Best-effort by design: a cache that is down behaves like an empty one, so methods
/// return no errors and an implementation logs its own failures. A model call must never
/// fail because its cache did.
#[async_trait::async_trait]
pub trait Cache: Send + Sync {
    /// The value stored under `key`, unless it is missing or expired.
    async fn get(&self, key: &str) -> Option<Vec<u8>>;

    /// Stores `value` under `key` for `ttl`, replacing any value already there.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration);

    /// Removes every entry whose key starts with `prefix`.
    async fn delete_prefix(&self, prefix: &str);
}

/// An in-process `Cache` holding at most `max_entries` entries.
///
/// When full, a new key first makes room by dropping expired entries, then the oldest
/// entry (by insertion). Cost: `get` is one hash lookup; `put` is one hash insert, plus a
/// scan of all entries when the cache is full; `delete_prefix` and `stats` scan all
/// entries. Every method holds one mutex for that work and never across an `.await`.
pub struct MemoryCache {
    max_entries: usize,
    clock: Clock,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<String, MemoryEntry>,
    /// Insertion counter: "oldest" must not depend on the clock, which may stand still.
    next_seq: u64,
    hits: u64,
    misses: u64,
}

struct MemoryEntry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
    seq: u64,
}

impl MemoryCache {
    /// An empty cache of at most `max_entries` entries (0 is treated as 1) on the
    /// system's monotonic clock.
    pub fn new(max_entries: usize) -> Self {
        Self::with_clock(max_entries, Arc::new(Instant::now))
    }

    /// An empty cache reading time from `clock` (e.g. a test clock moved by hand).
    pub fn with_clock(max_entries: usize, clock: Clock) -> Self {
        Self { max_entries: max_entries.max(1), clock, state: Mutex::new(MemoryState::default()) }
    }

    /// Hits and misses since creation, and the live entries now. Cost: a scan of all
    /// entries, since expired ones are only removed when room is needed.
    pub fn stats(&self) -> CacheStats {
        let now = (self.clock)();
        let state = lock(&self.state);
        let entries = state.entries.values().filter(|entry| !is_expired(entry.expires_at, now)).count();
        CacheStats { hits: state.hits, misses: state.misses, entries }
    }
}

impl MemoryState {
    /// Frees one slot: expired entries go first, since nobody can read them; only when
    /// none has expired is a live entry (the oldest) given up.
    fn make_room(&mut self, max_entries: usize, now: Instant) {
        self.entries.retain(|_, entry| !is_expired(entry.expires_at, now));
        if self.entries.len() < max_entries {
            return;
        }
        let oldest = self.entries.iter().min_by_key(|(_, entry)| entry.seq).map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            self.entries.remove(&oldest);
        }
    }
}

#[async_trait::async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = (self.clock)();
        let mut state = lock(&self.state);
        let live = state.entries.get(key).filter(|entry| !is_expired(entry.expires_at, now)).map(|e| e.value.clone());
        match live {
            Some(_) => state.hits += 1,
            None => state.misses += 1,
        }
        live
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let now = (self.clock)();
        let mut state = lock(&self.state);
        if !state.entries.contains_key(key) && state.entries.len() >= self.max_entries {
            state.make_room(self.max_entries, now);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.entries.insert(key.to_owned(), MemoryEntry { value, expires_at: now.checked_add(ttl), seq });
    }

    async fn delete_prefix(&self, prefix: &str) {
        lock(&self.state).entries.retain(|key, _| !key.starts_with(prefix));
    }
}

/// An exact-match response cache around a model: the same request to the same model is
/// answered from the cache instead of the provider.
///
/// Only deterministic requests are cached: `temperature` set to 0. A caller who sets a
/// higher temperature asks for a fresh sample on every call (e.g. to regenerate a reply
/// the customer disliked); serving a stored answer would silently take that away. An unset
/// temperature is not cached either, because providers then sample (OpenAI's default is 1).
///
/// Cost per call: serialising the request and one SHA-256 over it, then one cache `get`;
/// on a miss, one cache `put` after the answer finished, holding a copy of the answer
/// while it streams. A hit replays the stored answer, usage included (the tokens the
/// original call used, not tokens spent now).
pub struct CachedModel {
    inner: Arc<dyn ChatModel>,
    cache: Arc<dyn Cache>,
    ttl: Duration,
}

impl CachedModel {
    /// Caches `inner`'s complete answers in `cache` for `ttl`.
    pub fn new(inner: Arc<dyn ChatModel>, cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        Self { inner, cache, ttl }
    }

    /// How long an answer is served from the cache. Cost: none.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether `request` may be answered from the cache: `temperature` exactly 0 (see the
    /// type's docs for why). Cost: constant.
    pub fn is_cacheable(request: &ChatRequest) -> bool {
        request.temperature == Some(0.0)
    }

    /// The cache key of `request` to this model, or `None` when it is not cacheable:
    /// [`EXACT_KEY_PREFIX`] and the hex SHA-256 of the model id and the whole request as
    /// JSON, so any difference in messages, tools, tool choice, sampling, limits, stop
    /// sequences, seed or JSON mode is a different key. Cost: one serialisation and hash
    /// of the request.
    pub fn cache_key(&self, request: &ChatRequest) -> Option<String> {
        if !Self::is_cacheable(request) {
            return None;
        }
        let body = serde_json::to_vec(request).ok()?;
        let mut hasher = Sha256::new();
        hasher.update(self.inner.id().as_bytes());
        // A separator no id contains, so that no id/request pair can collide with another
        // by moving bytes across the boundary.
        hasher.update([0u8]);
        hasher.update(&body);
        let mut key = String::with_capacity(EXACT_KEY_PREFIX.len() + 64);
        key.push_str(EXACT_KEY_PREFIX);
        for byte in hasher.finalize() {
            // Writing to a String cannot fail.
            let _ = write!(key, "{byte:02x}");
        }
        Some(key)
    }

    /// The stored answer under `key`. One that cannot be decoded or has no finish (written
    /// by another version, or corrupted) is a miss, not an error: the provider is asked.
    async fn cached(&self, key: &str) -> Option<ChatResponse> {
        let bytes = self.cache.get(key).await?;
        match serde_json::from_slice::<ChatResponse>(&bytes) {
            Ok(response) if response.finish.is_some() => Some(response),
            Ok(_) | Err(_) => {
                tracing::warn!(key, "unreadable cached answer; asking the model");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl ChatModel for CachedModel {
    /// The wrapped model's id: a cached answer is that model's answer.
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// A cacheable request with a stored answer is replayed from it: the text as one
    /// delta, then the tool calls, the usage and the finish. Otherwise the inner model's
    /// events are passed through as they come, and the answer is stored once the stream
    /// ended with a `Finish` and no error.
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let Some(key) = self.cache_key(request) else {
            return self.inner.stream(request).await;
        };
        if let Some(response) = self.cached(&key).await {
            return Ok(replay(response));
        }
        let events = self.inner.stream(request).await?;
        Ok(Recording {
            events,
            answer: ChatResponse::default(),
            failed: false,
            cache: Arc::clone(&self.cache),
            key,
            ttl: self.ttl,
        }
        .into_stream())
    }
}

/// A stored answer as the events a model would have sent for it.
fn replay(response: ChatResponse) -> EventStream {
    let text = (!response.text.is_empty()).then_some(ChatEvent::TextDelta { text: response.text });
    let calls = response.tool_calls.into_iter().map(|call| ChatEvent::ToolCall { call });
    let usage = response.usage.map(|usage| ChatEvent::Usage { usage });
    let finish = response.finish.map(|reason| ChatEvent::Finish { reason });
    let events: Vec<_> = text.into_iter().chain(calls).chain(usage).chain(finish).map(Ok).collect();
    Box::pin(futures::stream::iter(events))
}

/// Passes an answer through while folding it, and stores it when it ended cleanly.
struct Recording {
    events: EventStream,
    answer: ChatResponse,
    failed: bool,
    cache: Arc<dyn Cache>,
    key: String,
    ttl: Duration,
}

impl Recording {
    fn into_stream(self) -> EventStream {
        Box::pin(futures::stream::unfold(self, |mut recording| async move {
            match recording.events.next().await {
                Some(Ok(event)) => {
                    recording.record(&event);
                    Some((Ok(event), recording))
                }
                Some(Err(error)) => {
                    recording.failed = true;
                    Some((Err(error), recording))
                }
                None => {
                    recording.store().await;
                    None
                }
            }
        }))
    }

    /// Folds one event in, as `collect` does.
    fn record(&mut self, event: &ChatEvent) {
        self.answer.apply(event);
    }

    /// Stores the answer only if it is whole: an error or a missing `Finish` means the
    /// consumer saw a failure, and replaying it as a success would hide that. A consumer
    /// that stops reading early never gets here, so a partly read answer is not stored.
    async fn store(self) {
        if self.failed || self.answer.finish.is_none() {
            return;
        }
        match serde_json::to_vec(&self.answer) {
            Ok(bytes) => self.cache.put(&self.key, bytes, self.ttl).await,
            Err(error) => tracing::warn!(%error, "cannot serialise an answer for the cache"),
        }
    }
}

/// Answers keyed by the embedding of the question that produced them: a new question
/// close enough in meaning to a stored one, for the same tenant and the same version of
/// its knowledge base, gets the stored answer.
///
/// The knowledge-base version is part of the match so that re-ingesting documents (which
/// bumps it) retires every answer built from the old ones without a purge. Vectors are
/// L2-normalised on the way in, so similarity is a dot product; vectors of different
/// dimensions, or of zero length, never match.
///
/// Cost: `lookup` scans every entry, O(entries × dim), bounded by `max_entries`; `insert`
/// normalises (O(dim)) and, when full, scans to drop expired entries. Memory is
/// `max_entries` × (dim × 4 bytes + answer). One mutex guards it all.
pub struct SemanticCache {
    threshold: f32,
    ttl: Duration,
    max_entries: usize,
    clock: Clock,
    state: Mutex<SemanticState>,
}

#[derive(Default)]
struct SemanticState {
    /// Oldest first, so eviction pops the front.
    entries: VecDeque<SemanticEntry>,
    hits: u64,
    misses: u64,
}

struct SemanticEntry {
    tenant: String,
    kb_version: String,
    embedding: Vec<f32>,
    answer: String,
    expires_at: Option<Instant>,
}

impl SemanticCache {
    /// An empty cache serving answers whose question has cosine similarity of at least
    /// `threshold` with the new one, for `ttl`, holding at most `max_entries` (0 is
    /// treated as 1), on the system's monotonic clock.
    pub fn new(threshold: f32, ttl: Duration, max_entries: usize) -> Self {
        Self::with_clock(threshold, ttl, max_entries, Arc::new(Instant::now))
    }

    /// As `new`, reading time from `clock` (e.g. a test clock moved by hand).
    pub fn with_clock(threshold: f32, ttl: Duration, max_entries: usize, clock: Clock) -> Self {
        Self { threshold, ttl, max_entries: max_entries.max(1), clock, state: Mutex::new(SemanticState::default()) }
    }

    /// The answer to the stored question most similar to `embedding`, if its similarity
    /// reaches the threshold, it belongs to `tenant` and `kb_version`, and it has not
    /// expired. Cost: O(entries × dim).
    pub fn lookup(&self, tenant: &str, kb_version: &str, embedding: &[f32]) -> Option<String> {
        let now = (self.clock)();
        let query = normalised(embedding.to_vec());
        let mut state = lock(&self.state);
        let best = query.and_then(|query| {
            state
                .entries
                .iter()
                .filter(|entry| entry.tenant == tenant && entry.kb_version == kb_version)
                .filter(|entry| entry.embedding.len() == query.len() && !is_expired(entry.expires_at, now))
                .map(|entry| (dot(&entry.embedding, &query), entry))
                .filter(|(similarity, _)| *similarity >= self.threshold)
                .max_by(|(a, _), (b, _)| a.total_cmp(b))
                .map(|(_, entry)| entry.answer.clone())
        });
        match best {
            Some(_) => state.hits += 1,
            None => state.misses += 1,
        }
        best
    }

    /// Stores `answer` to the question embedded as `embedding`, for `tenant` and
    /// `kb_version`. A zero or non-finite vector is not stored, since it has no direction
    /// to compare. When full, expired entries go first, then the oldest. Cost: O(dim),
    /// plus O(entries) when full.
    pub fn insert(&self, tenant: &str, kb_version: &str, embedding: Vec<f32>, answer: String) {
        let Some(embedding) = normalised(embedding) else {
            return;
        };
        let now = (self.clock)();
        let mut state = lock(&self.state);
        if state.entries.len() >= self.max_entries {
            state.entries.retain(|entry| !is_expired(entry.expires_at, now));
        }
        while state.entries.len() >= self.max_entries {
            state.entries.pop_front();
        }
        state.entries.push_back(SemanticEntry {
            tenant: tenant.to_owned(),
            kb_version: kb_version.to_owned(),
            embedding,
            answer,
            expires_at: now.checked_add(self.ttl),
        });
    }

    /// Drops every answer stored for `tenant`, e.g. when its data is deleted. Cost:
    /// O(entries).
    pub fn invalidate_tenant(&self, tenant: &str) {
        lock(&self.state).entries.retain(|entry| entry.tenant != tenant);
    }

    /// Hits and misses since creation, and the live entries now. Cost: O(entries).
    pub fn stats(&self) -> CacheStats {
        let now = (self.clock)();
        let state = lock(&self.state);
        let entries = state.entries.iter().filter(|entry| !is_expired(entry.expires_at, now)).count();
        CacheStats { hits: state.hits, misses: state.misses, entries }
    }
}

/// `vector` scaled to length 1, or `None` if it has no direction (zero or non-finite).
fn normalised(mut vector: Vec<f32>) -> Option<Vec<f32>> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    vector.iter_mut().for_each(|x| *x /= norm);
    Some(vector)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// An entry whose time to live overflowed `Instant` (`None`) never expires.
fn is_expired(expires_at: Option<Instant>, now: Instant) -> bool {
    expires_at.is_some_and(|at| now >= at)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single insert, remove or counter bump, so a
    // panic elsewhere while one was held cannot have left the state half-updated.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
