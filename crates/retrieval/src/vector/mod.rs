//! The vector index: approximate nearest-neighbour search over chunk embeddings, scoped to one
//! tenant and narrowed by metadata, kept on disk between runs.
//!
//! A [`VectorIndex`] holds, per chunk id, a unit-length vector and the chunk's
//! [`ChunkAttributes`] (its tenant and a few metadata pairs such as category and product). Its
//! graph is HNSW (through `usearch`, see `graph.rs`); a [`VectorFilter`] is checked on every
//! node the graph search reaches, so a narrow filter still fills its `k` results instead of
//! thinning out a top-k found without it; a filter that every chunk passes (the tenant
//! holds them all, no metadata asked) is skipped. With [`Precision::Int8`] the graph walks quantised
//! vectors and the best few candidates are rescored against full-precision copies.
//!
//! Invariant: a search never returns a chunk whose attributes fail its filter, and every score
//! it returns is the exact cosine similarity of the query and the stored vector. The index
//! knows chunk ids, vectors and attribute strings; nothing of documents, embedders or HTTP.

mod attributes;
mod config;
mod error;
mod graph;
mod index;
mod numeric;
mod persist;
mod slots;

pub use attributes::{ChunkAttributes, VectorFilter};
pub use config::{Precision, VectorIndexConfig};
pub use error::VectorError;
pub use index::VectorIndex;
pub(crate) use numeric::dot;
