//! An OpenAI-compatible `/embeddings` endpoint as an `Embedder`: OpenAI itself, and the
//! servers that speak its API (vLLM, Ollama, llama.cpp's server, TEI).
//!
//! Invariant: what the provider returns is checked before anyone sees it: one vector per
//! text, each index once, each of the configured dimension; then it is L2-normalised, since
//! not every server normalises.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{l2_normalise, EmbedError, Embedder};

/// Longest piece of an error body kept in an error message.
const MAX_ERROR_BODY: usize = 500;

/// Where and what to call.
#[derive(Debug, Clone)]
pub struct RemoteEmbedderConfig {
    /// The API root, up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The pinned model id, e.g. `text-embedding-3-small`.
    pub model: String,
    /// Bearer token; local servers often need none.
    pub api_key: Option<SecretString>,
    /// Length of the model's vectors; any other length is an error.
    pub dimension: usize,
    /// Deadline of one whole call, body included.
    pub deadline: Duration,
}

/// A provider speaking the OpenAI embeddings API.
#[derive(Debug)]
pub struct RemoteEmbedder {
    config: RemoteEmbedderConfig,
    id: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    /// Which input this vector belongs to; a server that leaves it out answers in order.
    index: Option<usize>,
}

impl RemoteEmbedder {
    pub fn new(config: RemoteEmbedderConfig) -> Result<Self, EmbedError> {
        if config.dimension == 0 {
            return Err(EmbedError::Config(format!("{}: the dimension must be at least 1", config.model)));
        }
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot build the HTTP client: {e}")))?;
        let id = format!("openai/{}", config.model);
        Ok(Self { config, id, client })
    }

    /// Sends the request and returns the body of a successful answer, or the failure sorted
    /// by kind: 429, 5xx, other 4xx, deadline, connection.
    async fn post(&self, texts: &[&str]) -> Result<Vec<u8>, EmbedError> {
        let url = format!("{}/embeddings", self.config.base_url.trim_end_matches('/'));
        let mut request = self
            .client
            .post(url)
            .timeout(self.config.deadline)
            .json(&json!({ "model": self.config.model, "input": texts }));
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let message: String = String::from_utf8_lossy(&body).chars().take(MAX_ERROR_BODY).collect();
        let provider = self.id.clone();
        Err(match status.as_u16() {
            429 => EmbedError::RateLimited { provider },
            code if code >= 500 => EmbedError::Server { provider, status: code, message },
            code => EmbedError::Rejected { provider, status: code, message },
        })
    }

    fn transport_error(&self, error: &reqwest::Error) -> EmbedError {
        if error.is_timeout() {
            EmbedError::Timeout { provider: self.id.clone(), after: self.config.deadline }
        } else {
            EmbedError::Connect { provider: self.id.clone(), message: error.to_string() }
        }
    }

    /// The vectors of `body`, in input order, checked and normalised.
    fn vectors(&self, body: &[u8], texts: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let malformed = |message: String| EmbedError::Malformed { provider: self.id.clone(), message };
        let response: EmbeddingsResponse = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
        if response.data.len() != texts {
            return Err(malformed(format!("{} vectors for {texts} texts", response.data.len())));
        }
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts];
        for (position, item) in response.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(position);
            if item.embedding.len() != self.config.dimension {
                return Err(EmbedError::WrongDimension {
                    model: self.id.clone(),
                    expected: self.config.dimension,
                    actual: item.embedding.len(),
                });
            }
            match vectors.get_mut(index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                Some(Some(_)) => return Err(malformed(format!("index {index} appears twice"))),
                None => return Err(malformed(format!("index {index} is out of range for {texts} texts"))),
            }
        }
        // Every slot is filled: as many items as texts, each index in range and seen once.
        let mut vectors: Vec<Vec<f32>> = vectors.into_iter().flatten().collect();
        vectors.iter_mut().for_each(|v| l2_normalise(v));
        Ok(vectors)
    }
}

#[async_trait::async_trait]
impl Embedder for RemoteEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.config.dimension
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.post(texts).await?;
        self.vectors(&body, texts.len())
    }
}
