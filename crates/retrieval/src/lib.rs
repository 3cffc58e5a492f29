//! The knowledge base: help-centre articles, their sections, and search over them with
//! citations.
//!
//! This first slice is keyword search (BM25 through tantivy) over article sections, and an
//! extractive answer that quotes the best section and cites it. Embeddings, the vector index,
//! hybrid fusion and reranking plug in behind the same `search` surface.
//!
//! Invariant: retrieval knows nothing about HTTP, tenants' storage or customer support; it
//! turns documents into ranked, citable passages.

mod answer;
mod article;
mod keyword;

pub use answer::{Citation, ExtractiveAnswer};
pub use article::{load_articles, split_sections, Article, ArticleError, Section};
pub use keyword::{Hit, KeywordIndex, SearchError};
