//! Dynamic batching in front of an `Embedder`: many concurrent callers, few model calls.
//!
//! Each text not found in the cache becomes a job on a bounded queue. One worker task takes
//! the first waiting job, gathers more until the batch is full or `max_wait` has passed,
//! runs the batch as one model call, stores the vectors in the cache and hands each caller
//! its own. While a batch runs, new jobs wait, so batches grow with the load.
//!
//! Invariants:
//! - Admission never waits: a call whose texts do not all fit in the queue right now is
//!   refused at once with `Overloaded` (or `TooManyTexts` if they never could), and none of
//!   its texts is queued.
//! - The worker only gathers and hands out; the model's work happens wherever the inner
//!   `Embedder` puts it (its own threads for `LocalEmbedder`), never on the runtime's.
//! - One model call at a time: a CPU model gains nothing from two, and a batch that waits
//!   grows instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::cache::{CacheStats, EmbeddingCache};
use super::{EmbedError, Embedder};

/// How batches are formed and how much may wait.
#[derive(Debug, Clone)]
pub struct BatchingConfig {
    /// Most texts in one model call.
    pub max_batch: usize,
    /// Longest a text waits for others to join its batch. Paid only when the load is light:
    /// under load the batch fills first.
    pub max_wait: Duration,
    /// Most texts waiting for the model; beyond that callers are refused.
    pub queue_capacity: usize,
    /// Vectors kept in the cache; 0 turns it off.
    pub cache_capacity: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self { max_batch: 32, max_wait: Duration::from_millis(3), queue_capacity: 1024, cache_capacity: 10_000 }
    }
}

/// Counters since the embedder started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchingStats {
    /// Texts asked for, found in the cache or not.
    pub texts: u64,
    pub cache: CacheStats,
    /// Calls made to the inner model, and the texts they carried.
    pub model_calls: u64,
    pub model_texts: u64,
    pub largest_batch: u64,
    /// Calls refused because the queue was full or the call too large for it.
    pub refused: u64,
    /// Texts waiting in the queue right now.
    pub queued: usize,
}

#[derive(Default)]
struct Counters {
    texts: AtomicU64,
    model_calls: AtomicU64,
    model_texts: AtomicU64,
    largest_batch: AtomicU64,
    refused: AtomicU64,
}

/// What a caller gets back for one text.
type Answer = Result<Vec<f32>, EmbedError>;

/// One text waiting for its vector.
struct Job {
    text: String,
    reply: oneshot::Sender<Answer>,
}

/// An `Embedder` that batches concurrent calls to another one and caches what it computed.
pub struct BatchingEmbedder {
    id: String,
    dimension: usize,
    queue: mpsc::Sender<Job>,
    queue_capacity: usize,
    cache: Arc<EmbeddingCache>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for BatchingEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingEmbedder").field("id", &self.id).field("stats", &self.stats()).finish()
    }
}

impl BatchingEmbedder {
    /// Starts the worker on the current Tokio runtime. It stops when this embedder is
    /// dropped, after the jobs already queued.
    pub fn start(inner: Arc<dyn Embedder>, config: BatchingConfig) -> Result<Self, EmbedError> {
        if config.max_batch == 0 || config.queue_capacity == 0 {
            return Err(EmbedError::Config("max_batch and queue_capacity must be at least 1".into()));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| EmbedError::Config("the batching embedder must be started inside a Tokio runtime".into()))?;
        let (queue, jobs) = mpsc::channel(config.queue_capacity);
        let cache = Arc::new(EmbeddingCache::new(config.cache_capacity));
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            inner: Arc::clone(&inner),
            max_batch: config.max_batch,
            max_wait: config.max_wait,
            cache: Arc::clone(&cache),
            counters: Arc::clone(&counters),
        };
        runtime.spawn(worker.run(jobs));
        Ok(Self {
            id: inner.id().to_owned(),
            dimension: inner.dimension(),
            queue,
            queue_capacity: config.queue_capacity,
            cache,
            counters,
        })
    }

    /// The vector of one text.
    pub async fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed(&[text]).await?;
        vectors.pop().ok_or_else(|| EmbedError::Stopped { model: self.id.clone() })
    }

    pub fn stats(&self) -> BatchingStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BatchingStats {
            texts: get(&self.counters.texts),
            cache: self.cache.stats(),
            model_calls: get(&self.counters.model_calls),
            model_texts: get(&self.counters.model_texts),
            largest_batch: get(&self.counters.largest_batch),
            refused: get(&self.counters.refused),
            queued: self.queue_capacity - self.queue.capacity(),
        }
    }

    /// Queues every text in `missing` or none of them.
    fn enqueue(&self, texts: &[&str], missing: &[usize]) -> Result<Vec<oneshot::Receiver<Answer>>, EmbedError> {
        if missing.len() > self.queue_capacity {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(EmbedError::TooManyTexts { texts: missing.len(), capacity: self.queue_capacity });
        }
        let permits = self.queue.try_reserve_many(missing.len()).map_err(|e| match e {
            TrySendError::Full(()) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                EmbedError::Overloaded { capacity: self.queue_capacity }
            }
            TrySendError::Closed(()) => EmbedError::Stopped { model: self.id.clone() },
        })?;
        Ok(permits
            .zip(missing)
            .map(|(permit, &i)| {
                let (reply, answer) = oneshot::channel();
                permit.send(Job { text: texts[i].to_owned(), reply });
                answer
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Embedder for BatchingEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.counters.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        let mut vectors = Vec::with_capacity(texts.len());
        let mut missing = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match self.cache.get(&self.id, text) {
                Some(vector) => vectors.push(vector),
                None => {
                    missing.push(i);
                    vectors.push(Vec::new());
                }
            }
        }
        if missing.is_empty() {
            return Ok(vectors);
        }
        let answers = self.enqueue(texts, &missing)?;
        for (answer, i) in answers.into_iter().zip(missing) {
            vectors[i] = answer.await.map_err(|_| EmbedError::Stopped { model: self.id.clone() })??;
        }
        Ok(vectors)
    }
}

/// The task that gathers jobs into batches and runs them.
struct Worker {
    inner: Arc<dyn Embedder>,
    max_batch: usize,
    max_wait: Duration,
    cache: Arc<EmbeddingCache>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.recv().await {
            let batch = self.gather(first, &mut jobs).await;
            self.run_batch(batch).await;
        }
    }

    /// `first` and whatever arrives before the batch is full or `max_wait` has passed.
    async fn gather(&self, first: Job, jobs: &mut mpsc::Receiver<Job>) -> Vec<Job> {
        let deadline = Instant::now() + self.max_wait;
        let mut batch = vec![first];
        while batch.len() < self.max_batch {
            match tokio::time::timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        batch
    }

    async fn run_batch(&self, mut batch: Vec<Job>) {
        // A caller that has gone away (its request timed out) no longer needs the work.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        // The same text asked for by several callers at once is embedded once.
        let mut distinct: Vec<&str> = Vec::with_capacity(batch.len());
        let mut position: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        let slots: Vec<usize> = batch
            .iter()
            .map(|job| {
                *position.entry(job.text.as_str()).or_insert_with(|| {
                    distinct.push(job.text.as_str());
                    distinct.len() - 1
                })
            })
            .collect();
        self.counters.model_calls.fetch_add(1, Ordering::Relaxed);
        self.counters.model_texts.fetch_add(distinct.len() as u64, Ordering::Relaxed);
        self.counters.largest_batch.fetch_max(distinct.len() as u64, Ordering::Relaxed);

        let result = self.inner.embed(&distinct).await;
        if let Ok(vectors) = &result {
            for (text, vector) in distinct.iter().zip(vectors) {
                self.cache.put(self.inner.id(), text, vector.clone());
            }
        }
        let answered = distinct.len();
        for (job, slot) in batch.into_iter().zip(slots) {
            let answer = match &result {
                Ok(vectors) => vectors.get(slot).cloned().ok_or_else(|| EmbedError::Inference {
                    model: self.inner.id().to_owned(),
                    message: format!("the model returned {} vectors for {answered} texts", vectors.len()),
                }),
                Err(e) => Err(e.clone()),
            };
            // The caller may have gone away meanwhile; its vector is in the cache anyway.
            let _ = job.reply.send(answer);
        }
    }
}
