//! The `[knowledge]` section: where the help centre is, how it is cut, embedded, searched
//! and put into prompts, and where its vector index is kept.
//!
//! Invariant: like every key, an embeddings provider's key never comes from the file; the
//! section names the variable holding it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use concierge_core::TenantId;
use concierge_retrieval::{ChunkingConfig, ContextConfig, Precision, SearchSettings};
use serde::{Deserialize, Serialize};

/// `[knowledge]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// A folder of Markdown (optional `+++` TOML front matter), text and HTML documents,
    /// ingested at start-up: new and changed documents are indexed, unchanged ones skipped,
    /// and documents that came from this folder and are no longer in it removed. Optional:
    /// documents can also come from `concierge ingest` and `POST /v1/documents`.
    pub path: Option<PathBuf>,
    /// Where the vector index is saved, to be reopened at start-up instead of embedding
    /// every chunk again. None: kept in memory only.
    pub data_dir: Option<PathBuf>,
    /// Largest document accepted by `POST /v1/documents`, in bytes.
    pub max_document_bytes: usize,
    pub embedder: EmbedderConfig,
    pub chunking: ChunkingConfig,
    /// Search settings of every tenant without its own.
    pub search: SearchSettings,
    /// Search settings by tenant id.
    pub tenants: BTreeMap<TenantId, TenantKnowledgeConfig>,
    pub context: ContextConfig,
    /// `int8` keeps a quarter of the vector memory in the graph and rescores the best
    /// candidates exactly.
    pub precision: Precision,
    /// A cross-encoder reranker (off unless set): a folder with config.json, tokenizer.json
    /// and model.safetensors of a BERT-family sequence-classification model.
    pub reranker: Option<PathBuf>,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            path: None,
            data_dir: Some(PathBuf::from("data/vectors")),
            max_document_bytes: 4 * 1024 * 1024,
            embedder: EmbedderConfig::default(),
            chunking: ChunkingConfig::default(),
            search: SearchSettings::default(),
            tenants: BTreeMap::new(),
            context: ContextConfig::default(),
            precision: Precision::Float32,
            reranker: None,
        }
    }
}

/// `[knowledge.tenants.<id>]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantKnowledgeConfig {
    pub search: SearchSettings,
}

/// `[knowledge.embedder]`: the embedded model (default) or an OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum EmbedderConfig {
    Local {
        /// The model's folder (`scripts/fetch-models` puts all-MiniLM-L6-v2 here).
        #[serde(default = "default_model_dir")]
        path: PathBuf,
        /// Threads the model computes on; 0 = every core.
        #[serde(default)]
        threads: usize,
    },
    Openai {
        base_url: String,
        /// Pinned model id, e.g. `text-embedding-3-small`.
        model: String,
        dimension: usize,
        /// The variable holding the key; omit for servers that need none.
        #[serde(default)]
        api_key_env: Option<String>,
        #[serde(default = "default_embed_deadline")]
        deadline_secs: u64,
    },
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self::Local { path: default_model_dir(), threads: 0 }
    }
}

fn default_model_dir() -> PathBuf {
    PathBuf::from("models/all-minilm-l6-v2")
}

fn default_embed_deadline() -> u64 {
    30
}

impl KnowledgeConfig {
    /// The first problem found, as (key, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, problem: String| Err((format!("knowledge.{key}"), problem));
        if let Some(path) = &self.path {
            if !path.is_dir() {
                return fail("path", format!("is `{}`, which is not a folder", path.display()));
            }
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.max_document_bytes) {
            return fail("max_document_bytes", format!("is {}; expected 1024 to 268435456", self.max_document_bytes));
        }
        if let Err(problem) = self.chunking.validate() {
            return fail("chunking", problem);
        }
        if let Err(problem) = self.search.validate() {
            return fail("search", problem);
        }
        for (tenant, settings) in &self.tenants {
            if let Err(problem) = settings.search.validate() {
                return fail(&format!("tenants.{tenant}.search"), problem);
            }
        }
        if let Err(problem) = self.context.validate() {
            return fail("context", problem);
        }
        if let EmbedderConfig::Openai { base_url, dimension, deadline_secs, .. } = &self.embedder {
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return fail("embedder.base_url", format!("is `{base_url}`; expected an http(s) URL"));
            }
            if !(1..=65_536).contains(dimension) {
                return fail("embedder.dimension", format!("is {dimension}; expected 1 to 65536"));
            }
            if !(1..=600).contains(deadline_secs) {
                return fail("embedder.deadline_secs", format!("is {deadline_secs}; expected 1 to 600"));
            }
        }
        Ok(())
    }

    /// The variable an embeddings provider's key is read from, if any.
    pub fn key_variable(&self) -> Option<&str> {
        match &self.embedder {
            EmbedderConfig::Openai { api_key_env, .. } => api_key_env.as_deref(),
            EmbedderConfig::Local { .. } => None,
        }
    }
}
