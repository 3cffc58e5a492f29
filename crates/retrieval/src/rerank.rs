//! Cross-encoder reranking: a BERT model that reads a query and one passage together and
//! gives the pair a relevance logit, used to reorder the few dozen candidates that keyword
//! and vector search return.
//!
//! A cross-encoder ranks better than comparing embeddings because every query token attends
//! to every passage token; it costs one encoder pass per passage, which is why it only ever
//! sees a short candidate list.
//!
//! # Supplying a model
//!
//! The project ships no reranker and `scripts/fetch-models` fetches none. Any BERT-family
//! cross-encoder exported in the Hugging Face layout works — a `BertForSequenceClassification`
//! with one label, such as a ms-marco MiniLM cross-encoder. Download it where you have hub
//! access and put its `config.json`, `tokenizer.json` and `model.safetensors` in
//! `models/<name>/` (a checkpoint that only has `pytorch_model.bin` must be converted to
//! safetensors first). The weights may carry the `bert.` prefix (as
//! `BertForSequenceClassification` saves them) or be bare; the head is `classifier.weight`
//! `[1, hidden]` and `classifier.bias` `[1]`, read through the `pooler.dense` layer when the
//! model has one.
//!
//! # Off by default
//!
//! Nothing here runs unless a caller builds a [`CrossEncoder`] from a model folder; without
//! one, search ranks exactly as it does without this module.
//!
//! # What a score is
//!
//! A pair is encoded as `[CLS] query [SEP] passage [SEP]` by the tokenizer's own
//! post-processor, the query with token type 0 and the passage with 1. The score is
//! `classifier(tanh(pooler_dense(h_CLS)))`, or `classifier(h_CLS)` for a model without a
//! pooler: a raw logit, higher meaning more relevant. It is not a probability (a sigmoid
//! makes it one for models trained with a binary loss) and logits of two different models
//! are not comparable.
//!
//! Invariants:
//! - `score` returns exactly one finite logit per passage, in passage order; a batch of
//!   passages scores the same as the passages one at a time.
//! - The model computes only on the cross-encoder's own thread pool, sized by
//!   `CrossEncoderConfig::threads`. `score` blocks its caller until the pool is done, so
//!   async code calls it on a blocking thread (see [`CrossEncoder::score`]).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{Encoding, PaddingDirection, PostProcessor, Tokenizer};

use crate::embed::local::{load_tokenizer, read_json, required_file, Padding};
use crate::embed::EmbedError;

/// Where the cross-encoder is and how much of the machine it may use.
#[derive(Debug, Clone)]
pub struct CrossEncoderConfig {
    /// The folder holding config.json, tokenizer.json and model.safetensors.
    pub model_dir: PathBuf,
    /// Tokens of one (query, passage) pair, special tokens included; capped at the model's
    /// `max_position_embeddings`. The passage is cut to fit. The query is kept whole while it
    /// takes at most half of the tokens beside the special ones; a longer query is cut too
    /// (each side to about half), which degrades its scores rather than failing the call.
    pub max_tokens: usize,
    /// Pairs run through the encoder at once. A larger batch keeps the threads busier but
    /// pads every pair to the longest one in it.
    pub batch_size: usize,
    /// Threads the model computes on. Scoring one batch uses all of them.
    pub threads: usize,
}

impl CrossEncoderConfig {
    /// What cross-encoders are trained with, and BERT's position limit.
    pub const DEFAULT_MAX_TOKENS: usize = 512;
    /// Enough pairs to keep a few cores busy without padding short passages to long ones
    /// too often.
    pub const DEFAULT_BATCH_SIZE: usize = 16;

    /// The model in `model_dir`, 512 tokens a pair, 16 pairs a batch, on every core the
    /// process may use.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            batch_size: Self::DEFAULT_BATCH_SIZE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Why a cross-encoder could not be loaded or could not score.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RerankError {
    /// Settings that cannot work, caught before anything is read.
    #[error("reranking configuration: {0}")]
    Config(String),
    /// The model folder or one of its three files is not on disk.
    #[error(
        "reranking model: {} not found (a cross-encoder folder holds config.json, tokenizer.json and model.safetensors)",
        path.display()
    )]
    MissingFile { path: PathBuf },
    /// config.json or model.safetensors is there but cannot be used.
    #[error("reranking model: {}: {message}", path.display())]
    InvalidFile { path: PathBuf, message: String },
    /// tokenizer.json cannot be read or cannot encode pairs.
    #[error("reranking model: tokenizer {}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    /// A weight of the relevance head is not in model.safetensors.
    #[error("reranking model: {}: weight {name} is missing", path.display())]
    MissingWeight { path: PathBuf, name: String },
    /// A weight of the relevance head has the wrong shape for the model's hidden size.
    #[error("reranking model: {}: weight {name} has shape {actual:?}, expected {expected:?}", path.display())]
    WeightShape { path: PathBuf, name: String, expected: Vec<usize>, actual: Vec<usize> },
    /// The classifier has more than one output. Taking one of them would silently rank by
    /// whatever that label means (for a two-label model, often "irrelevant"), so the model
    /// is refused instead.
    #[error("reranking model: {}: the classifier has {labels} labels; a reranker has exactly one relevance logit", path.display())]
    NotSingleLogit { path: PathBuf, labels: usize },
    #[error("tokenizing for {model}: {message}")]
    Tokenize { model: String, message: String },
    /// The model failed while running.
    #[error("{model}: inference failed: {message}")]
    Inference { model: String, message: String },
}

impl RerankError {
    /// The embedder's model-folder helpers, reused here, speak `EmbedError`; they fail only
    /// with a missing or an unusable file.
    fn from_model_files(error: EmbedError) -> Self {
        match error {
            EmbedError::ModelMissing { path } => Self::MissingFile { path },
            EmbedError::ModelInvalid { path, message } => Self::InvalidFile { path, message },
            other => Self::Config(other.to_string()),
        }
    }
}

/// The fields of config.json this module checks itself; the encoder's are candle's.
#[derive(Deserialize)]
struct HeadShape {
    max_position_embeddings: usize,
    type_vocab_size: usize,
    /// Rarely written out; Hugging Face derives it from `id2label`.
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

impl HeadShape {
    /// Refuses what the config itself says cannot be a reranker. The weights are checked
    /// again at load, since they are what computes.
    fn check(&self, path: &Path) -> Result<(), RerankError> {
        let labels = self.num_labels.or(self.id2label.as_ref().map(serde_json::Map::len));
        if let Some(labels) = labels.filter(|&labels| labels != 1) {
            return Err(RerankError::NotSingleLogit { path: path.to_owned(), labels });
        }
        if self.type_vocab_size < 2 {
            return Err(RerankError::InvalidFile {
                path: path.to_owned(),
                message: format!(
                    "type_vocab_size is {}; a cross-encoder needs two token types, one for the query and one for the passage",
                    self.type_vocab_size
                ),
            });
        }
        Ok(())
    }
}

/// A BERT cross-encoder running in-process on the CPU. Cheap to share behind an `Arc`;
/// calls made at the same time share its threads.
pub struct CrossEncoder {
    id: String,
    bert: BertModel,
    head: RelevanceHead,
    tokenizer: Tokenizer,
    device: Device,
    pool: rayon::ThreadPool,
    max_tokens: usize,
    batch_size: usize,
}

impl std::fmt::Debug for CrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEncoder")
            .field("id", &self.id)
            .field("pooler", &self.head.pooler.is_some())
            .field("max_tokens", &self.max_tokens)
            .field("batch_size", &self.batch_size)
            .field("threads", &self.pool.current_num_threads())
            .finish_non_exhaustive()
    }
}

impl CrossEncoder {
    /// Loads the model and starts its threads. Blocking: reads the whole weights file (about
    /// 90 MB for a MiniLM-L6 cross-encoder); call it from `spawn_blocking` in async code.
    pub fn load(config: CrossEncoderConfig) -> Result<Self, RerankError> {
        if config.threads == 0 {
            return Err(RerankError::Config("the cross-encoder needs at least one thread".into()));
        }
        if config.batch_size == 0 {
            return Err(RerankError::Config("the cross-encoder's batch_size must be at least 1".into()));
        }
        let dir = &config.model_dir;
        if !dir.is_dir() {
            return Err(RerankError::MissingFile { path: dir.clone() });
        }
        let config_path = required_file(dir, "config.json").map_err(RerankError::from_model_files)?;
        let tokenizer_path = required_file(dir, "tokenizer.json").map_err(RerankError::from_model_files)?;
        let weights_path = required_file(dir, "model.safetensors").map_err(RerankError::from_model_files)?;

        let shape: HeadShape = read_json(&config_path).map_err(RerankError::from_model_files)?;
        shape.check(&config_path)?;
        let bert_config: BertConfig = read_json(&config_path).map_err(RerankError::from_model_files)?;
        let max_tokens = config.max_tokens.min(shape.max_position_embeddings);
        let tokenizer = load_pair_tokenizer(&tokenizer_path, max_tokens)?;

        let device = Device::Cpu;
        let (bert, head) = load_weights(&weights_path, &bert_config, &device)?;

        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("rerank-{i}"))
            .build()
            .map_err(|e| RerankError::Config(format!("cannot start the reranking threads: {e}")))?;
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            id: format!("local/{name}"),
            bert,
            head,
            tokenizer,
            device,
            pool,
            max_tokens,
            batch_size: config.batch_size,
        })
    }

    /// `local/<model folder name>`, e.g. `local/ms-marco-minilm-l-6-v2`: scores of two ids are
    /// not comparable.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Tokens of one pair the model reads, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// One relevance logit per passage for `query`, in passage order; higher is more
    /// relevant. An empty slice gives an empty result without running the model.
    ///
    /// Blocking and CPU-heavy: about one encoder pass per passage, on the cross-encoder's own
    /// threads, while the calling thread waits. From async code, run it on a blocking thread:
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use concierge_retrieval::rerank::CrossEncoder;
    /// # async fn rerank(reranker: Arc<CrossEncoder>, query: String, passages: Vec<String>)
    /// #     -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    /// let scores = tokio::task::spawn_blocking(move || {
    ///     let passages: Vec<&str> = passages.iter().map(String::as_str).collect();
    ///     reranker.score(&query, &passages)
    /// })
    /// .await??;
    /// # Ok(scores) }
    /// ```
    pub fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, RerankError> {
        if passages.is_empty() {
            return Ok(Vec::new());
        }
        // `install` runs the closure on the pool, and candle's and the tokenizer's parallel
        // work inside it stays on the pool too.
        self.pool.install(|| {
            let mut scores = Vec::with_capacity(passages.len());
            for batch in passages.chunks(self.batch_size) {
                scores.extend(self.score_batch(query, batch)?);
            }
            Ok(scores)
        })
    }

    fn score_batch(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, RerankError> {
        let pairs: Vec<(&str, &str)> = passages.iter().map(|passage| (query, *passage)).collect();
        let encodings = self.tokenizer.encode_batch(pairs, true).map_err(|e| self.tokenize_error(e))?;
        let scores = self.forward(&encodings).map_err(|e| self.inference_error(e))?;
        if scores.len() != passages.len() {
            return Err(self.inference_error(format!("{} scores for {} passages", scores.len(), passages.len())));
        }
        if let Some(bad) = scores.iter().find(|score| !score.is_finite()) {
            return Err(self.inference_error(format!("the model gave a non-finite score ({bad})")));
        }
        Ok(scores)
    }

    /// The encoder over the padded batch, then the head over each pair's [CLS] state.
    fn forward(&self, encodings: &[Encoding]) -> candle_core::Result<Vec<f32>> {
        let [ids, type_ids, mask] = batch_tensors(encodings, &self.device)?;
        let hidden = self.bert.forward(&ids, &type_ids, Some(&mask))?;
        // Padding is on the right (see `load_pair_tokenizer`), so [CLS] is every pair's
        // first token.
        let cls = hidden.i((.., 0))?;
        self.head.forward(&cls)?.squeeze(1)?.to_vec1()
    }

    fn tokenize_error(&self, error: impl std::fmt::Display) -> RerankError {
        RerankError::Tokenize { model: self.id.clone(), message: error.to_string() }
    }

    fn inference_error(&self, error: impl std::fmt::Display) -> RerankError {
        RerankError::Inference { model: self.id.clone(), message: error.to_string() }
    }
}

/// The embedder's tokenizer set-up (the shipped fixed padding and truncation replaced by
/// padding to the batch's longest pair and truncation at `max_tokens`), checked for what
/// pairs need. The truncation is the tokenizer's longest-first: it cuts the passage alone
/// unless the query is longer than half the budget, and then never fails.
fn load_pair_tokenizer(path: &Path, max_tokens: usize) -> Result<Tokenizer, RerankError> {
    let invalid = |message: String| RerankError::Tokenizer { path: path.to_owned(), message };
    let mut tokenizer = load_tokenizer(path, max_tokens, Padding::BatchLongest).map_err(|e| match e {
        EmbedError::ModelInvalid { message, .. } => invalid(message),
        other => RerankError::from_model_files(other),
    })?;
    // Without a post-processor a pair reaches the model with no [CLS] to classify and no
    // [SEP] between query and passage.
    let special = tokenizer.get_post_processor().map_or(0, |processor| processor.added_tokens(true));
    if special == 0 {
        return Err(invalid(
            "it adds no special tokens to a pair ([CLS], [SEP]); it has no BERT post-processor".into(),
        ));
    }
    // The tokenizer subtracts its special tokens from the budget before truncating.
    if max_tokens < special + 2 {
        return Err(RerankError::Config(format!(
            "max_tokens {max_tokens} leaves no room for a query and a passage beside the {special} special tokens"
        )));
    }
    // Left padding would move [CLS] off position 0 and shift every position embedding.
    if let Some(padding) = tokenizer.get_padding_mut() {
        padding.direction = PaddingDirection::Right;
    }
    Ok(tokenizer)
}

fn load_weights(path: &Path, config: &BertConfig, device: &Device) -> Result<(BertModel, RelevanceHead), RerankError> {
    let invalid = |message: String| RerankError::InvalidFile { path: path.to_owned(), message };
    // Read into memory rather than mapped, as the embedder does: a mapping is `unsafe` to
    // create, and the copy costs nothing that matters next to the model's own size.
    let bytes = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let root = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(|e| invalid(e.to_string()))?;
    // BertForSequenceClassification keeps the encoder (and pooler) under `bert.`; a bare
    // export does not. The classifier is at the root either way.
    let encoder =
        if root.contains_tensor("bert.embeddings.word_embeddings.weight") { root.pp("bert") } else { root.clone() };
    let bert = BertModel::load(encoder.clone(), config).map_err(|e| invalid(e.to_string()))?;
    let head = RelevanceHead::load(&root, &encoder, config.hidden_size, path)?;
    Ok((bert, head))
}

/// What turns the encoder's [CLS] state into a relevance logit.
struct RelevanceHead {
    /// BertForSequenceClassification's pooler: a dense layer and tanh over [CLS].
    pooler: Option<Linear>,
    /// `[1, hidden]`: one logit.
    classifier: Linear,
}

impl RelevanceHead {
    fn load(root: &VarBuilder, encoder: &VarBuilder, hidden: usize, path: &Path) -> Result<Self, RerankError> {
        let pooler = if encoder.contains_tensor("pooler.dense.weight") {
            let dense = encoder.pp("pooler.dense");
            let weight = head_weight(&dense, "weight", path)?;
            Some(Linear::new(
                expect_shape(weight, &dense, "weight", &[hidden, hidden], path)?,
                Some(expect_shape(head_weight(&dense, "bias", path)?, &dense, "bias", &[hidden], path)?),
            ))
        } else {
            None
        };
        let classifier = root.pp("classifier");
        let weight = head_weight(&classifier, "weight", path)?;
        if let [labels, width] = *weight.dims() {
            if width == hidden && labels != 1 {
                return Err(RerankError::NotSingleLogit { path: path.to_owned(), labels });
            }
        }
        let classifier = Linear::new(
            expect_shape(weight, &classifier, "weight", &[1, hidden], path)?,
            Some(expect_shape(head_weight(&classifier, "bias", path)?, &classifier, "bias", &[1], path)?),
        );
        Ok(Self { pooler, classifier })
    }

    /// `(pairs, hidden)` [CLS] states to `(pairs, 1)` logits.
    fn forward(&self, cls: &Tensor) -> candle_core::Result<Tensor> {
        match &self.pooler {
            Some(pooler) => self.classifier.forward(&pooler.forward(cls)?.tanh()?),
            None => self.classifier.forward(cls),
        }
    }
}

/// A head weight by name, or the error naming it in full (e.g. `bert.pooler.dense.bias`).
fn head_weight(vb: &VarBuilder, name: &str, path: &Path) -> Result<Tensor, RerankError> {
    if !vb.contains_tensor(name) {
        return Err(RerankError::MissingWeight { path: path.to_owned(), name: full_name(vb, name) });
    }
    vb.get_unchecked(name).map_err(|e| RerankError::InvalidFile { path: path.to_owned(), message: e.to_string() })
}

/// Checked here rather than left to the first matmul, so that a wrong export is named at
/// load instead of failing every search.
fn expect_shape(
    tensor: Tensor,
    vb: &VarBuilder,
    name: &str,
    expected: &[usize],
    path: &Path,
) -> Result<Tensor, RerankError> {
    if tensor.dims() == expected {
        return Ok(tensor);
    }
    Err(RerankError::WeightShape {
        path: path.to_owned(),
        name: full_name(vb, name),
        expected: expected.to_vec(),
        actual: tensor.dims().to_vec(),
    })
}

fn full_name(vb: &VarBuilder, name: &str) -> String {
    format!("{}.{name}", vb.prefix())
}

/// The batch as the encoder's three inputs (token ids, token types, attention mask), each
/// `(pairs, tokens)`.
fn batch_tensors(encodings: &[Encoding], device: &Device) -> candle_core::Result<[Tensor; 3]> {
    let tokens = encodings.first().map_or(0, Encoding::len);
    if encodings.iter().any(|e| e.len() != tokens) {
        candle_core::bail!("the tokenizer did not pad the batch to one length");
    }
    let shape = (encodings.len(), tokens);
    let column = |field: fn(&Encoding) -> &[u32]| {
        let values: Vec<u32> = encodings.iter().flat_map(|e| field(e).iter().copied()).collect();
        Tensor::from_vec(values, shape, device)
    };
    Ok([column(Encoding::get_ids)?, column(Encoding::get_type_ids)?, column(Encoding::get_attention_mask)?])
}

impl crate::knowledge::Reranker for CrossEncoder {
    fn id(&self) -> &str {
        CrossEncoder::id(self)
    }

    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, String> {
        CrossEncoder::score(self, query, passages).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    //! No reranker weights can be downloaded here, so the tests build a tiny BERT
    //! cross-encoder of their own (random but seeded weights, a 40-word WordPiece
    //! vocabulary) and check `CrossEncoder` against a forward pass written in plain loops.

    use std::collections::{BTreeMap, HashMap};

    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

    use super::*;

    const VOCAB: [&str; 40] = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "how",
        "do",
        "i",
        "reset",
        "my",
        "password",
        "click",
        "the",
        "link",
        "in",
        "email",
        "we",
        "sent",
        "you",
        "refunds",
        "take",
        "five",
        "days",
        "to",
        "arrive",
        "orders",
        "ship",
        "from",
        "our",
        "warehouse",
        "open",
        "account",
        "settings",
        "and",
        "choose",
        "change",
        "new",
        "a",
        ".",
        ",",
        "page",
    ];
    const HIDDEN: usize = 16;
    const LAYERS: usize = 2;
    const HEADS: usize = 2;
    const INTERMEDIATE: usize = 32;
    const POSITIONS: usize = 64;
    const LAYER_NORM_EPS: f64 = 1e-12;

    const QUERY: &str = "How do I reset my password?";
    const PASSAGES: [&str; 5] = [
        "Click the link in the email we sent you.",
        "Refunds take five days to arrive.",
        "Open account settings, and choose change password.",
        "Orders ship from our warehouse.",
        "Reset",
    ];

    /// The two ways a user's export lays the weights out.
    #[derive(Clone, Copy)]
    enum Layout {
        /// As `BertForSequenceClassification` saves it: `bert.` prefix and a pooler.
        SequenceClassification,
        /// Bare encoder weights and no pooler: the classifier reads [CLS] directly.
        Bare,
    }

    impl Layout {
        fn prefix(self) -> &'static str {
            match self {
                Layout::SequenceClassification => "bert.",
                Layout::Bare => "",
            }
        }

        fn pooler(self) -> bool {
            matches!(self, Layout::SequenceClassification)
        }
    }

    /// Named f32 weights with their shapes: written to model.safetensors, and read back by
    /// the reference forward pass.
    struct Weights(BTreeMap<String, (Vec<usize>, Vec<f32>)>);

    impl Weights {
        fn seeded(layout: Layout) -> Self {
            let rng = &mut fastrand::Rng::with_seed(0x5eed);
            let mut weights = Weights(BTreeMap::new());
            let p = layout.prefix();
            weights.random(rng, &format!("{p}embeddings.word_embeddings.weight"), &[VOCAB.len(), HIDDEN], 0.0, 1.0);
            weights.random(rng, &format!("{p}embeddings.position_embeddings.weight"), &[POSITIONS, HIDDEN], 0.0, 0.5);
            weights.random(rng, &format!("{p}embeddings.token_type_embeddings.weight"), &[2, HIDDEN], 0.0, 0.5);
            weights.layer_norm(rng, &format!("{p}embeddings.LayerNorm"));
            for layer in 0..LAYERS {
                let l = format!("{p}encoder.layer.{layer}");
                for part in ["query", "key", "value"] {
                    weights.linear(rng, &format!("{l}.attention.self.{part}"), HIDDEN, HIDDEN);
                }
                weights.linear(rng, &format!("{l}.attention.output.dense"), HIDDEN, HIDDEN);
                weights.layer_norm(rng, &format!("{l}.attention.output.LayerNorm"));
                weights.linear(rng, &format!("{l}.intermediate.dense"), INTERMEDIATE, HIDDEN);
                weights.linear(rng, &format!("{l}.output.dense"), HIDDEN, INTERMEDIATE);
                weights.layer_norm(rng, &format!("{l}.output.LayerNorm"));
            }
            if layout.pooler() {
                weights.linear(rng, &format!("{p}pooler.dense"), HIDDEN, HIDDEN);
            }
            weights.linear(rng, "classifier", 1, HIDDEN);
            weights
        }

        fn random(&mut self, rng: &mut fastrand::Rng, name: &str, shape: &[usize], centre: f32, spread: f32) {
            let values = (0..shape.iter().product()).map(|_| centre + spread * (2.0 * rng.f32() - 1.0)).collect();
            self.0.insert(name.to_owned(), (shape.to_vec(), values));
        }

        fn linear(&mut self, rng: &mut fastrand::Rng, name: &str, outputs: usize, inputs: usize) {
            self.random(rng, &format!("{name}.weight"), &[outputs, inputs], 0.0, 0.5);
            self.random(rng, &format!("{name}.bias"), &[outputs], 0.0, 0.1);
        }

        fn layer_norm(&mut self, rng: &mut fastrand::Rng, name: &str) {
            self.random(rng, &format!("{name}.weight"), &[HIDDEN], 1.0, 0.2);
            self.random(rng, &format!("{name}.bias"), &[HIDDEN], 0.0, 0.1);
        }

        fn get(&self, name: &str) -> &[f32] {
            &self.0.get(name).unwrap_or_else(|| panic!("the test model has no {name}")).1
        }

        fn save(&self, path: &Path) {
            let tensors: HashMap<String, Tensor> = self
                .0
                .iter()
                .map(|(name, (shape, values))| {
                    (name.clone(), Tensor::from_vec(values.clone(), shape.as_slice(), &Device::Cpu).unwrap())
                })
                .collect();
            candle_core::safetensors::save(&tensors, path).unwrap();
        }
    }

    /// A cross-encoder folder in a temporary directory, laid out as a user would supply one.
    struct TinyModel {
        dir: tempfile::TempDir,
        layout: Layout,
        weights: Weights,
    }

    impl TinyModel {
        fn new(layout: Layout) -> Self {
            let model = Self { dir: tempfile::tempdir().unwrap(), layout, weights: Weights::seeded(layout) };
            model.write_config(&tiny_config());
            tiny_tokenizer().save(model.path("tokenizer.json"), false).unwrap();
            model.write_weights();
            model
        }

        fn path(&self, file: &str) -> PathBuf {
            self.dir.path().join(file)
        }

        fn write_config(&self, config: &serde_json::Value) {
            std::fs::write(self.path("config.json"), config.to_string()).unwrap();
        }

        fn write_weights(&self) {
            self.weights.save(&self.path("model.safetensors"));
        }

        fn config(&self) -> CrossEncoderConfig {
            CrossEncoderConfig { batch_size: 4, threads: 2, ..CrossEncoderConfig::new(self.dir.path()) }
        }

        fn load(&self) -> CrossEncoder {
            CrossEncoder::load(self.config()).expect("the tiny model loads")
        }

        /// The score of the pair computed without candle, from the untruncated encoding.
        fn reference_score(&self, query: &str, passage: &str) -> f32 {
            let mut tokenizer = Tokenizer::from_file(self.path("tokenizer.json")).unwrap();
            tokenizer.with_padding(None);
            tokenizer.with_truncation(None).unwrap();
            let encoding = tokenizer.encode((query, passage), true).unwrap();
            reference_forward(&self.weights, self.layout, encoding.get_ids(), encoding.get_type_ids())
        }
    }

    fn tiny_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
            "vocab_size": VOCAB.len(),
            "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": POSITIONS,
            "type_vocab_size": 2,
            "initializer_range": 0.02,
            "layer_norm_eps": LAYER_NORM_EPS,
            "pad_token_id": 0,
            "id2label": { "0": "LABEL_0" },
            "label2id": { "LABEL_0": 0 }
        })
    }

    /// A BERT tokenizer: lower-casing normaliser, BERT pre-tokenizer, WordPiece, and the
    /// pair template BERT's tokenizer.json files carry.
    fn tiny_tokenizer() -> Tokenizer {
        let vocab: [(String, u32); VOCAB.len()] = std::array::from_fn(|i| (VOCAB[i].to_owned(), i as u32));
        let wordpiece = WordPiece::builder().vocab(vocab).unk_token("[UNK]".into()).build().unwrap();
        let template = TemplateProcessing::builder()
            .try_single("[CLS] $A [SEP]")
            .unwrap()
            .try_pair("[CLS] $A [SEP] $B:1 [SEP]:1")
            .unwrap()
            .special_tokens(vec![("[CLS]", token_id("[CLS]")), ("[SEP]", token_id("[SEP]"))])
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(wordpiece);
        tokenizer.with_normalizer(Some(BertNormalizer::default())).unwrap();
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer.with_post_processor(Some(template));
        // As shipped tokenizer.json files often are: fixed padding and truncation, which
        // the cross-encoder must replace.
        tokenizer
            .with_padding(Some(PaddingParams { strategy: PaddingStrategy::Fixed(POSITIONS), ..Default::default() }));
        tokenizer.with_truncation(Some(TruncationParams { max_length: POSITIONS, ..Default::default() })).unwrap();
        tokenizer
    }

    fn token_id(token: &str) -> u32 {
        VOCAB.iter().position(|t| *t == token).unwrap_or_else(|| panic!("{token} is not in the vocabulary")) as u32
    }

    /// BERT for sequence classification in plain f64 loops, written from the Hugging Face
    /// definition rather than from candle's code: the independent check on what
    /// `CrossEncoder` computes.
    fn reference_forward(weights: &Weights, layout: Layout, ids: &[u32], types: &[u32]) -> f32 {
        let w = |name: &str| weights.get(&format!("{}{name}", layout.prefix()));
        let row = |table: &str, index: usize| -> Vec<f64> {
            w(table)[index * HIDDEN..(index + 1) * HIDDEN].iter().map(|&v| f64::from(v)).collect()
        };
        let mut states: Vec<Vec<f64>> = ids
            .iter()
            .zip(types)
            .enumerate()
            .map(|(position, (&id, &kind))| {
                let word = row("embeddings.word_embeddings.weight", id as usize);
                let place = row("embeddings.position_embeddings.weight", position);
                let segment = row("embeddings.token_type_embeddings.weight", kind as usize);
                let sum = add(&add(&word, &place), &segment);
                layer_norm(&sum, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
            })
            .collect();
        for layer in 0..LAYERS {
            let l = |name: &str| w(&format!("encoder.layer.{layer}.{name}"));
            let dense = |x: &[f64], name: &str| linear(x, l(&format!("{name}.weight")), l(&format!("{name}.bias")));
            let queries: Vec<Vec<f64>> = states.iter().map(|x| dense(x, "attention.self.query")).collect();
            let keys: Vec<Vec<f64>> = states.iter().map(|x| dense(x, "attention.self.key")).collect();
            let values: Vec<Vec<f64>> = states.iter().map(|x| dense(x, "attention.self.value")).collect();
            let width = HIDDEN / HEADS;
            let contexts: Vec<Vec<f64>> = queries
                .iter()
                .map(|query| {
                    let mut context = vec![0.0; HIDDEN];
                    for head in 0..HEADS {
                        let dims = head * width..(head + 1) * width;
                        let scores: Vec<f64> = keys
                            .iter()
                            .map(|key| dot(&query[dims.clone()], &key[dims.clone()]) / (width as f64).sqrt())
                            .collect();
                        for (weight, value) in softmax(&scores).iter().zip(&values) {
                            for d in dims.clone() {
                                context[d] += weight * value[d];
                            }
                        }
                    }
                    context
                })
                .collect();
            states = states
                .iter()
                .zip(&contexts)
                .map(|(input, context)| {
                    let attended = layer_norm(
                        &add(&dense(context, "attention.output.dense"), input),
                        l("attention.output.LayerNorm.weight"),
                        l("attention.output.LayerNorm.bias"),
                    );
                    let inner: Vec<f64> = dense(&attended, "intermediate.dense").into_iter().map(gelu).collect();
                    layer_norm(
                        &add(&dense(&inner, "output.dense"), &attended),
                        l("output.LayerNorm.weight"),
                        l("output.LayerNorm.bias"),
                    )
                })
                .collect();
        }
        let cls = &states[0];
        let features: Vec<f64> = if layout.pooler() {
            linear(cls, w("pooler.dense.weight"), w("pooler.dense.bias")).into_iter().map(f64::tanh).collect()
        } else {
            cls.clone()
        };
        linear(&features, weights.get("classifier.weight"), weights.get("classifier.bias"))[0] as f32
    }

    fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// `weight` is `[outputs, inputs]`, row-major, as PyTorch stores a linear layer.
    fn linear(x: &[f64], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let inputs = x.len();
        bias.iter()
            .enumerate()
            .map(|(o, &b)| {
                let row = &weight[o * inputs..(o + 1) * inputs];
                f64::from(b) + row.iter().zip(x).map(|(&w, x)| f64::from(w) * x).sum::<f64>()
            })
            .collect()
    }

    fn layer_norm(x: &[f64], gain: &[f32], bias: &[f32]) -> Vec<f64> {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let variance = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let scale = (variance + LAYER_NORM_EPS).sqrt();
        x.iter()
            .zip(gain.iter().zip(bias))
            .map(|(v, (&g, &b))| (v - mean) / scale * f64::from(g) + f64::from(b))
            .collect()
    }

    fn softmax(scores: &[f64]) -> Vec<f64> {
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        exps.iter().map(|e| e / total).collect()
    }

    /// BERT's exact GELU, x·Φ(x).
    fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }

    /// Abramowitz and Stegun 7.1.26: absolute error below 1.5e-7, far inside the tolerance.
    fn erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let poly =
            t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        (1.0 - poly * (-x * x).exp()).copysign(x)
    }

    fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= tolerance * e.abs().max(1.0), "{actual:?} vs {expected:?}");
        }
    }

    fn load_error(model: &TinyModel) -> RerankError {
        CrossEncoder::load(model.config()).expect_err("the model should be refused")
    }

    #[test]
    fn pairs_are_encoded_as_query_then_passage_with_segment_ids() {
        let encoder = TinyModel::new(Layout::SequenceClassification).load();
        let encoding = encoder.tokenizer.encode(("Reset my password", "click the link"), true).unwrap();
        let expected: Vec<u32> =
            ["[CLS]", "reset", "my", "password", "[SEP]", "click", "the", "link", "[SEP]"].map(token_id).to_vec();
        // Nine tokens, not the 64 the shipped tokenizer.json pads to.
        assert_eq!(encoding.get_ids(), expected);
        assert_eq!(encoding.get_type_ids(), [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn scores_match_a_plain_reference_forward_pass() {
        for layout in [Layout::SequenceClassification, Layout::Bare] {
            let model = TinyModel::new(layout);
            let scores = model.load().score(QUERY, &PASSAGES).unwrap();
            let expected: Vec<f32> = PASSAGES.iter().map(|p| model.reference_score(QUERY, p)).collect();
            assert_close(&scores, &expected, 1e-4);
            // The comparison means something only if the passages score apart.
            let spread =
                expected.iter().copied().fold(f32::MIN, f32::max) - expected.iter().copied().fold(f32::MAX, f32::min);
            assert!(spread > 0.05, "reference scores barely differ: {expected:?}");
        }
    }

    #[test]
    fn scores_are_one_finite_logit_per_passage_and_repeatable() {
        let model = TinyModel::new(Layout::SequenceClassification);
        let encoder = model.load();
        let first = encoder.score(QUERY, &PASSAGES).unwrap();
        assert_eq!(first.len(), PASSAGES.len());
        assert!(first.iter().all(|s| s.is_finite()), "{first:?}");
        assert_eq!(encoder.score(QUERY, &PASSAGES).unwrap(), first);
        assert_eq!(model.load().score(QUERY, &PASSAGES).unwrap(), first);
        assert_eq!(encoder.score(QUERY, &[]).unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn batching_does_not_change_scores() {
        let model = TinyModel::new(Layout::SequenceClassification);
        let one_at_a_time = CrossEncoder::load(CrossEncoderConfig { batch_size: 1, ..model.config() }).unwrap();
        let batched = CrossEncoder::load(CrossEncoderConfig { batch_size: 3, ..model.config() }).unwrap();
        let singles = one_at_a_time.score(QUERY, &PASSAGES).unwrap();
        // Batches of three and two, each padded to its longest pair.
        assert_close(&batched.score(QUERY, &PASSAGES).unwrap(), &singles, 1e-5);
        let each: Vec<f32> = PASSAGES.iter().map(|p| batched.score(QUERY, &[p]).unwrap()[0]).collect();
        assert_close(&each, &singles, 1e-5);
    }

    #[test]
    fn permuting_passages_permutes_scores() {
        let encoder = TinyModel::new(Layout::SequenceClassification).load();
        let scores = encoder.score(QUERY, &PASSAGES).unwrap();
        for (i, a) in scores.iter().enumerate() {
            for b in &scores[i + 1..] {
                assert!((a - b).abs() > 1e-3, "scores too close to tell a permutation apart: {scores:?}");
            }
        }
        let order = [3, 0, 4, 2, 1];
        let permuted: Vec<&str> = order.iter().map(|&i| PASSAGES[i]).collect();
        let expected: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
        assert_close(&encoder.score(QUERY, &permuted).unwrap(), &expected, 1e-5);
    }

    #[test]
    fn long_passages_are_cut_to_max_tokens_and_the_query_is_kept() {
        let model = TinyModel::new(Layout::SequenceClassification);
        let encoder = CrossEncoder::load(CrossEncoderConfig { max_tokens: 16, ..model.config() }).unwrap();
        let query = "how do i reset my password";
        let long = "click the link in the email we sent you and open account settings";
        let encoding = encoder.tokenizer.encode((query, long), true).unwrap();
        // 3 special tokens, the 6 query tokens (under half of the other 13), and the 7
        // passage tokens that fit.
        let expected: Vec<u32> = [
            "[CLS]", "how", "do", "i", "reset", "my", "password", "[SEP]", "click", "the", "link", "in", "the",
            "email", "we", "[SEP]",
        ]
        .map(token_id)
        .to_vec();
        assert_eq!(encoding.get_ids(), expected);
        let kept = "click the link in the email we";
        let score = encoder.score(query, &[long]).unwrap();
        assert_eq!(score, encoder.score(query, &[kept]).unwrap());
        assert_close(&score, &[model.reference_score(query, kept)], 1e-4);
    }

    #[test]
    fn an_overlong_query_is_cut_rather_than_failing() {
        let model = TinyModel::new(Layout::SequenceClassification);
        let encoder = CrossEncoder::load(CrossEncoderConfig { max_tokens: 14, ..model.config() }).unwrap();
        let query = "how do i reset my password ".repeat(5);
        let encoding = encoder.tokenizer.encode((query.as_str(), "orders ship"), true).unwrap();
        assert_eq!(encoding.len(), 14);
        let scores = encoder.score(&query, &["orders ship"]).unwrap();
        assert!(scores.len() == 1 && scores[0].is_finite(), "{scores:?}");
    }

    #[test]
    fn max_tokens_is_capped_at_the_model_positions() {
        let model = TinyModel::new(Layout::Bare);
        assert_eq!(model.load().max_tokens(), POSITIONS);
    }

    #[test]
    fn a_missing_file_is_named() {
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            let model = TinyModel::new(Layout::SequenceClassification);
            std::fs::remove_file(model.path(file)).unwrap();
            let error = load_error(&model);
            assert!(matches!(&error, RerankError::MissingFile { path } if path.ends_with(file)), "{error:?}");
            assert!(error.to_string().contains(file), "{error}");
        }
        let model = TinyModel::new(Layout::Bare);
        let missing_dir = CrossEncoderConfig::new(model.path("nowhere"));
        assert!(matches!(CrossEncoder::load(missing_dir), Err(RerankError::MissingFile { .. })));
    }

    #[test]
    fn a_missing_head_weight_is_named() {
        for (layout, name) in [
            (Layout::SequenceClassification, "classifier.weight"),
            (Layout::Bare, "classifier.bias"),
            (Layout::SequenceClassification, "bert.pooler.dense.bias"),
        ] {
            let mut model = TinyModel::new(layout);
            model.weights.0.remove(name);
            model.write_weights();
            let error = load_error(&model);
            assert!(matches!(&error, RerankError::MissingWeight { name: missing, .. } if missing == name), "{error:?}");
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn a_wrongly_shaped_head_weight_is_named_with_both_shapes() {
        let mut model = TinyModel::new(Layout::SequenceClassification);
        model.weights.0.insert("bert.pooler.dense.weight".into(), (vec![HIDDEN, 8], vec![0.1; HIDDEN * 8]));
        model.write_weights();
        let error = load_error(&model);
        assert!(
            matches!(&error, RerankError::WeightShape { name, expected, actual, .. }
                if name == "bert.pooler.dense.weight" && expected == &[HIDDEN, HIDDEN] && actual == &[HIDDEN, 8]),
            "{error:?}"
        );
    }

    #[test]
    fn a_classifier_with_two_labels_is_refused() {
        // Declared in config.json…
        let model = TinyModel::new(Layout::SequenceClassification);
        let mut config = tiny_config();
        config["id2label"] = serde_json::json!({ "0": "LABEL_0", "1": "LABEL_1" });
        model.write_config(&config);
        assert!(matches!(load_error(&model), RerankError::NotSingleLogit { labels: 2, .. }));
        // …or only in the weights.
        let mut model = TinyModel::new(Layout::SequenceClassification);
        model.weights.0.insert("classifier.weight".into(), (vec![2, HIDDEN], vec![0.1; 2 * HIDDEN]));
        model.weights.0.insert("classifier.bias".into(), (vec![2], vec![0.0; 2]));
        model.write_weights();
        assert!(matches!(load_error(&model), RerankError::NotSingleLogit { labels: 2, .. }));
    }

    #[test]
    fn an_unusable_tokenizer_is_reported_as_such() {
        let model = TinyModel::new(Layout::SequenceClassification);
        std::fs::write(model.path("tokenizer.json"), "not a tokenizer").unwrap();
        assert!(matches!(load_error(&model), RerankError::Tokenizer { path, .. } if path.ends_with("tokenizer.json")));

        let mut without_template = tiny_tokenizer();
        without_template.with_post_processor(None::<TemplateProcessing>);
        without_template.save(model.path("tokenizer.json"), false).unwrap();
        let error = load_error(&model);
        assert!(
            matches!(&error, RerankError::Tokenizer { message, .. } if message.contains("special tokens")),
            "{error:?}"
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let model = TinyModel::new(Layout::Bare);
        for config in [
            CrossEncoderConfig { threads: 0, ..model.config() },
            CrossEncoderConfig { batch_size: 0, ..model.config() },
            CrossEncoderConfig { max_tokens: 4, ..model.config() },
        ] {
            assert!(matches!(CrossEncoder::load(config), Err(RerankError::Config(_))));
        }
    }

    #[test]
    fn the_cross_encoder_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<CrossEncoder>();
    }
}
