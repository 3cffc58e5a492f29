//! all-MiniLM-L6-v2 (or another sentence-transformers BERT model laid out the same way)
//! run in-process on the CPU with candle.
//!
//! The pipeline is the one sentence-transformers defines for this model: WordPiece tokens
//! truncated at `max_seq_length`, the BERT encoder, mean pooling over the real tokens, L2
//! normalisation. The encoder is `encoder::Encoder`, which runs a batch without padding.
//!
//! Invariant: the model runs only on the embedder's own thread pool, sized by
//! `LocalEmbedderConfig::threads`, so embedding never occupies the async runtime's threads
//! and never uses more cores than configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::encoder::{Encoder, Packed};
use super::{l2_normalise, EmbedError, Embedder};

/// The model's folder under `models/`, as scripts/fetch-models lays it out.
const MINILM_DIR: &str = "all-minilm-l6-v2";
const MINILM_NAME: &str = "all-MiniLM-L6-v2";

/// Where the model is and how much of the machine it may use.
#[derive(Debug, Clone)]
pub struct LocalEmbedderConfig {
    /// The folder holding config.json, model.safetensors and tokenizer.json (and, optionally,
    /// sentence_bert_config.json and 1_Pooling/config.json).
    pub model_dir: PathBuf,
    /// The pinned model name; the embedder's id is `local/<name>`.
    pub name: String,
    /// Threads the model computes on. Embedding one batch uses all of them.
    pub threads: usize,
}

impl LocalEmbedderConfig {
    /// all-MiniLM-L6-v2 in `models_dir`, on every core the process may use.
    pub fn all_minilm_l6_v2(models_dir: impl AsRef<Path>) -> Self {
        Self {
            model_dir: models_dir.as_ref().join(MINILM_DIR),
            name: MINILM_NAME.to_owned(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The fields of config.json this module reads itself; the rest is candle's business.
#[derive(Deserialize)]
struct ModelShape {
    hidden_size: usize,
    max_position_embeddings: usize,
}

/// sentence_bert_config.json.
#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// 1_Pooling/config.json.
#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

/// A sentence-embedding model running in-process. Cheap to share behind an `Arc`; calls
/// made at the same time share its threads.
pub struct LocalEmbedder {
    id: String,
    dimension: usize,
    max_tokens: usize,
    model: Arc<Model>,
}

/// What the model threads need; owned by an `Arc` so that work handed to the pool can
/// outlive the call that started it.
struct Model {
    id: String,
    encoder: Encoder,
    tokenizer: Tokenizer,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("id", &self.id)
            .field("dimension", &self.dimension)
            .field("max_tokens", &self.max_tokens)
            .field("threads", &self.model.pool.current_num_threads())
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads the model and starts its threads. Blocking: reads about 90 MB and takes a few
    /// hundred milliseconds; call it from `spawn_blocking` in async code.
    pub fn load(config: LocalEmbedderConfig) -> Result<Self, EmbedError> {
        if config.threads == 0 {
            return Err(EmbedError::Config("the local embedding model needs at least one thread".into()));
        }
        let dir = &config.model_dir;
        if !dir.is_dir() {
            return Err(EmbedError::ModelMissing { path: dir.clone() });
        }
        let config_path = required_file(dir, "config.json")?;
        let weights_path = required_file(dir, "model.safetensors")?;
        let tokenizer_path = required_file(dir, "tokenizer.json")?;

        let shape: ModelShape = read_json(&config_path)?;
        let bert_config: BertConfig = read_json(&config_path)?;
        check_pooling(dir, shape.hidden_size)?;
        let max_tokens = max_tokens(dir, shape.max_position_embeddings)?;
        // The encoder takes a batch's texts end to end, so nothing is padded.
        let tokenizer = load_tokenizer(&tokenizer_path, max_tokens, Padding::None)?;

        let device = Device::Cpu;
        let invalid_weights =
            |e: candle_core::Error| EmbedError::ModelInvalid { path: weights_path.clone(), message: e.to_string() };
        // Read into memory rather than mapped: a mapping is `unsafe` to create, and the
        // weights are small enough that the copy costs nothing that matters.
        let bytes = std::fs::read(&weights_path)
            .map_err(|e| EmbedError::ModelInvalid { path: weights_path.clone(), message: e.to_string() })?;
        let weights = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device).map_err(invalid_weights)?;
        let encoder = Encoder::load(weights, &bert_config).map_err(invalid_weights)?;

        let id = format!("local/{}", config.name);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("embed-{i}"))
            // A panic in candle must fail the call it belongs to, not abort the process
            // (rayon's default for a panicking spawned job).
            .panic_handler(|_| tracing::error!("the local embedding model panicked while embedding a batch"))
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot start the embedding threads: {e}")))?;
        let model = Model { id: id.clone(), encoder, tokenizer, pool };
        Ok(Self { id, dimension: shape.hidden_size, max_tokens, model: Arc::new(model) })
    }

    /// Tokens the model reads; longer texts are truncated to their start.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The token ids the model sees for `text`, special tokens included, after truncation:
    /// tells how much of a long text its embedding covers.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let encoding = self.model.tokenizer.encode(text, true).map_err(|e| self.model.tokenize_error(e))?;
        Ok(encoding.get_ids().to_vec())
    }
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let model = Arc::clone(&self.model);
        self.model.pool.spawn(move || {
            // The caller may have given up; then nobody wants the vectors.
            let _ = reply.send(model.embed_now(&texts));
        });
        // The sender is dropped without sending only if the job panicked.
        answer.await.map_err(|_| EmbedError::Inference {
            model: self.id.clone(),
            message: "the model thread failed while embedding this batch".into(),
        })?
    }
}

impl Model {
    /// Runs one batch to its vectors, on the calling thread (one of the pool's).
    fn embed_now(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(|e| self.tokenize_error(e))?;
        let mut batch = Packed::default();
        for encoding in &encodings {
            batch.push(encoding.get_ids(), encoding.get_type_ids());
        }
        // Mean pooling would divide each sum by its token count; the L2 normalisation that
        // follows makes the division moot, so it is skipped.
        let mut vectors = self.encoder.forward_summed(&batch).map_err(|e| self.inference_error(e))?;
        vectors.iter_mut().for_each(|v| l2_normalise(v));
        Ok(vectors)
    }

    fn tokenize_error(&self, error: impl std::fmt::Display) -> EmbedError {
        EmbedError::Tokenize { model: self.id.clone(), message: error.to_string() }
    }

    fn inference_error(&self, error: impl std::fmt::Display) -> EmbedError {
        EmbedError::Inference { model: self.id.clone(), message: error.to_string() }
    }
}

pub(crate) fn required_file(dir: &Path, name: &str) -> Result<PathBuf, EmbedError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EmbedError::ModelMissing { path })
    }
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let invalid = |message: String| EmbedError::ModelInvalid { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))
}

/// Only mean pooling is implemented; a model that pools otherwise would give vectors that
/// look right and rank wrong, so it is refused at load.
fn check_pooling(dir: &Path, hidden_size: usize) -> Result<(), EmbedError> {
    let path = dir.join("1_Pooling").join("config.json");
    if !path.is_file() {
        // sentence-transformers' default for a bare transformer is mean pooling too.
        return Ok(());
    }
    let pooling: PoolingConfig = read_json(&path)?;
    let problem = if !pooling.pooling_mode_mean_tokens {
        "only mean pooling (pooling_mode_mean_tokens) is supported".to_owned()
    } else if pooling.word_embedding_dimension != hidden_size {
        format!(
            "word_embedding_dimension {} differs from the model's hidden_size {hidden_size}",
            pooling.word_embedding_dimension
        )
    } else {
        return Ok(());
    };
    Err(EmbedError::ModelInvalid { path, message: problem })
}

/// The sentence-transformers limit (sentence_bert_config.json), which is what the model was
/// trained with, capped by the positions the encoder has.
fn max_tokens(dir: &Path, positions: usize) -> Result<usize, EmbedError> {
    let path = dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok(positions);
    }
    let config: SentenceBertConfig = read_json(&path)?;
    Ok(config.max_seq_length.min(positions))
}

/// How a tokenizer pads a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    /// Not at all: for a model that takes a batch's texts end to end.
    None,
    /// To the batch's longest text: for a model that takes a rectangular batch.
    BatchLongest,
}

/// tokenizer.json pads and truncates every input to a fixed 128 tokens. `padding` replaces
/// that padding (none, or to the batch's longest text: either way no work on padding a
/// batch does not need), and truncating at `max_tokens` lets long texts use the length the
/// model was trained with.
pub(crate) fn load_tokenizer(path: &Path, max_tokens: usize, padding: Padding) -> Result<Tokenizer, EmbedError> {
    let invalid = |message: String| EmbedError::ModelInvalid { path: path.to_owned(), message };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| invalid(e.to_string()))?;
    let shipped = tokenizer.get_padding().cloned().unwrap_or_default();
    tokenizer.with_padding(match padding {
        Padding::None => None,
        Padding::BatchLongest => {
            Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, pad_to_multiple_of: None, ..shipped })
        }
    });
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: max_tokens, ..TruncationParams::default() }))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(tokenizer)
}
