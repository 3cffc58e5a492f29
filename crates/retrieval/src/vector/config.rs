//! How a vector index is built and searched.

use serde::{Deserialize, Serialize};

use super::error::VectorError;

/// What the graph stores for each vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit floats in the graph: 4 bytes per dimension, scores straight from the graph.
    Float32,
    /// 8-bit integers in the graph (a quarter of the memory it walks), plus full-precision copies
    /// beside it; the best `rescore_factor × k` candidates are rescored exactly.
    Int8,
}

/// Graph and search parameters. [`VectorIndexConfig::new`] gives defaults tuned on 20,000
/// clustered 384-dimensional sentence-embedding-like vectors (`examples/ann_choice.rs`): recall@10
/// 0.995 at about 5,000 queries per second on one core in float32, and about 10,000 in int8.
/// Doubling `connectivity` or `ef_construction` bought no recall there that a larger `ef_search`
/// did not buy more cheaply; recall falls slowly as an index grows, hence an `ef_search` with room
/// to spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorIndexConfig {
    /// Length of every vector; fixed for the life of the index.
    pub dimensions: usize,
    /// What the graph stores and walks; see [`Precision`].
    pub precision: Precision,
    /// HNSW `M`: links per node on the upper layers (twice as many on the base layer). More links
    /// raise recall and memory.
    pub connectivity: usize,
    /// Candidates considered while linking a new vector; higher builds a better graph, slower.
    pub ef_construction: usize,
    /// Candidates kept while searching (raised to the number requested when that is larger);
    /// the recall/speed dial.
    pub ef_search: usize,
    /// With [`Precision::Int8`], how many candidates per requested result are rescored exactly.
    pub rescore_factor: usize,
    /// Searches that may run at once; each holds a scratch context in the graph, and further
    /// searches wait for one to be free.
    pub max_concurrent_searches: usize,
}

impl VectorIndexConfig {
    // The tuned defaults (see the type's documentation).
    pub const DEFAULT_CONNECTIVITY: usize = 16;
    pub const DEFAULT_EF_CONSTRUCTION: usize = 128;
    pub const DEFAULT_EF_SEARCH: usize = 64;
    pub const DEFAULT_RESCORE_FACTOR: usize = 4;

    /// Float32 graph with the tuned defaults, one search context per available core.
    pub fn new(dimensions: usize) -> Self {
        Self {
            dimensions,
            precision: Precision::Float32,
            connectivity: Self::DEFAULT_CONNECTIVITY,
            ef_construction: Self::DEFAULT_EF_CONSTRUCTION,
            ef_search: Self::DEFAULT_EF_SEARCH,
            rescore_factor: Self::DEFAULT_RESCORE_FACTOR,
            max_concurrent_searches: Self::default_concurrency(),
        }
    }

    /// One search context per core: more concurrent searches than cores only queue for CPU.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// The same settings with `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), VectorError> {
        let positive = [
            ("dimensions", self.dimensions),
            ("connectivity", self.connectivity),
            ("ef_construction", self.ef_construction),
            ("ef_search", self.ef_search),
            ("rescore_factor", self.rescore_factor),
            ("max_concurrent_searches", self.max_concurrent_searches),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(VectorError::Config(format!("{name} must be at least 1")));
        }
        // With a single link per node the graph degenerates into chains with nothing to route
        // around.
        if self.connectivity < 2 {
            return Err(VectorError::Config("connectivity must be at least 2".into()));
        }
        Ok(())
    }
}
