//! The knowledge base: documents in the formats a help centre is kept in, cut into
//! parents and children, embedded, and searched by keywords and by meaning, with
//! citations.
//!
//! Invariant: retrieval knows nothing about tenants' storage or customer support and serves
//! no HTTP (it may call an embeddings API); it turns documents into ranked, citable
//! passages.

mod answer;
mod article;
pub mod chunk;
pub mod embed;
pub mod eval;
pub mod fusion;
pub mod ingest;
mod keyword;
pub mod knowledge;
pub mod rerank;
mod text;
pub mod vector;

pub use answer::{Citation, ExtractiveAnswer};
pub use article::{split_sections, Article, ArticleError, Section};
pub use chunk::{chunk_sections, estimate_tokens, Child, ChunkingConfig, Chunks, Parent};
pub use embed::{
    BatchingConfig, BatchingEmbedder, BatchingStats, EmbedError, Embedder, LocalEmbedder, LocalEmbedderConfig,
    RemoteEmbedder, RemoteEmbedderConfig,
};
pub use fusion::{Fusion, FusionMethod};
pub use ingest::{load_folder, parse_document, parse_document_bytes, SourceDefaults, SourceFormat};
pub use keyword::{KeywordChunk, KeywordIndex, SearchError};
pub use knowledge::{
    chunk_key, ContextConfig, Hit, IndexedDocument, KnowledgeBase, KnowledgeError, RankedScore, Reranker, ScoredChunk,
    SearchMode, SearchRequest, SearchResults, SearchSettings, StageScores, StageTimings,
};
pub use text::{sentence_spans, trim_span};
pub use vector::{ChunkAttributes, Precision, VectorError, VectorFilter, VectorIndex, VectorIndexConfig};
