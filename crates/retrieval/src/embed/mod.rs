//! Sentence embeddings: what an embedding model is to the rest of the code, the models
//! behind that, and the batching and cache in front of them.
//!
//! `Embedder` is the one interface: a pinned model id, a dimension, and `embed`, which turns
//! texts into vectors. Implementations: `LocalEmbedder` (all-MiniLM-L6-v2 in-process on
//! candle) and `RemoteEmbedder` (an OpenAI-compatible `/embeddings` endpoint).
//! `BatchingEmbedder` sits in front of either and turns many concurrent callers into few
//! model calls, with a bounded queue and a cache.
//!
//! Invariants:
//! - `embed` returns exactly one vector per input text, in input order, each of length
//!   `dimension()` and of unit L2 norm, so a dot product is the cosine similarity.
//! - Vectors from two different `id()`s are never comparable; the id is part of every cache
//!   key and should be stored beside every persisted vector.
//! - `embed` never blocks the async runtime: CPU-bound models run on threads of their own.

mod batching;
mod cache;
mod encoder;
pub(crate) mod local;
mod remote;

use std::path::PathBuf;

pub use batching::{BatchingConfig, BatchingEmbedder, BatchingStats};
pub use cache::{CacheStats, EmbeddingCache};
pub use local::{LocalEmbedder, LocalEmbedderConfig};
pub use remote::{RemoteEmbedder, RemoteEmbedderConfig};

/// A sentence-embedding model.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    /// The pinned model id, e.g. `local/all-MiniLM-L6-v2` or `openai/text-embedding-3-small`.
    fn id(&self) -> &str;

    /// Length of every vector this model returns.
    fn dimension(&self) -> usize;

    /// One L2-normalised vector per text, in order. An empty slice gives an empty result
    /// without calling the model.
    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Why texts could not be embedded.
///
/// Errors are `Clone` because one failed model call fails every caller whose text was in
/// its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// The model's folder or one of its files is not on disk.
    #[error("embedding model not found at {}: run scripts/fetch-models --only embeddings", path.display())]
    ModelMissing { path: PathBuf },
    /// The model's files are there but cannot be used.
    #[error("embedding model at {}: {message}", path.display())]
    ModelInvalid { path: PathBuf, message: String },
    /// Settings that cannot work, caught before anything runs.
    #[error("embedding configuration: {0}")]
    Config(String),
    #[error("tokenizing for {model}: {message}")]
    Tokenize { model: String, message: String },
    /// The in-process model failed while running.
    #[error("{model}: inference failed: {message}")]
    Inference { model: String, message: String },
    /// The batching queue holds as many texts as it may; the caller should back off
    /// (HTTP 503 with `Retry-After`, or 429).
    #[error("embedding queue is full ({capacity} texts waiting); try again shortly")]
    Overloaded { capacity: usize },
    /// One call asked for more texts than the whole queue can ever hold.
    #[error("{texts} texts in one call exceed the embedding queue ({capacity}); embed them in smaller calls")]
    TooManyTexts { texts: usize, capacity: usize },
    /// The worker behind a `BatchingEmbedder` (or a model thread) is gone.
    #[error("{model}: the embedding worker has stopped")]
    Stopped { model: String },
    /// A remote provider answered 429.
    #[error("{provider}: rate limited")]
    RateLimited { provider: String },
    /// A remote provider answered 5xx.
    #[error("{provider}: server error {status}: {message}")]
    Server { provider: String, status: u16, message: String },
    /// A remote provider refused the request (4xx other than 429): a bad key, model or input.
    #[error("{provider}: request rejected with {status}: {message}")]
    Rejected { provider: String, status: u16, message: String },
    #[error("{provider}: no answer within {after:?}")]
    Timeout { provider: String, after: std::time::Duration },
    #[error("{provider}: connection failed: {message}")]
    Connect { provider: String, message: String },
    /// A remote provider answered 2xx with a body that is not the embeddings we asked for.
    #[error("{provider}: malformed response: {message}")]
    Malformed { provider: String, message: String },
    /// A vector of the wrong length: the model is not the one configured.
    #[error("{model}: expected {expected}-dimensional vectors, got {actual}")]
    WrongDimension { model: String, expected: usize, actual: usize },
}

/// Scales `vector` to unit L2 norm in place. A zero vector stays zero: it has no direction
/// to keep, and dividing would make it NaN.
pub(crate) fn l2_normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_gives_unit_length_and_leaves_zero_alone() {
        let mut v = vec![3.0, 4.0];
        l2_normalise(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 3];
        l2_normalise(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
    }
}
