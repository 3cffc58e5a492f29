//! The HNSW graph, through `usearch`.
//!
//! Why usearch: it is the only one of the candidates measured (`examples/ann_choice.rs`:
//! 20,000 clustered 384-dimensional unit vectors, recall@10 against brute force) that has
//! everything this index needs — a filter predicate checked inside the graph walk, removal with
//! slot reuse (re-ingesting a document replaces its chunks in place), int8 vectors compared by
//! cosine, and saving to and loading from a byte buffer. Of the other two, `hnsw_rs` filters
//! inside its search but cannot remove a point, and at equal recall it searched at about half
//! usearch's rate and built at half its speed; `instant-distance` searched fastest of all
//! (recall 0.99 at about 2× usearch's float rate) but can neither filter nor insert after
//! building, so every ingestion would rebuild the whole graph and a tenant filter could only
//! thin out a finished top-k. An int8 graph with exact rescoring closes that gap: through this
//! index it reaches recall 0.99 at about `instant-distance`'s rate.
//!
//! A float32 graph computes its distances with [`dot`] rather than usearch's own kernel, which
//! sums float32 products in float64 (measured in bench/README.md, "Retrieval").
//!
//! This module is the only one that names usearch; it turns its exceptions into
//! [`VectorError::Graph`] and knows which metric goes with which [`Precision`].

use std::fmt::Display;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind, VectorType};

use super::config::{Precision, VectorIndexConfig};
use super::error::VectorError;
use super::numeric::{dot, quantize_i8};

/// Room added when the graph is full: doubling, but never less than this.
const MIN_GROWTH: usize = 1024;

/// usearch marks removed slots with the largest key, so no chunk may use it.
pub(crate) const RESERVED_KEY: u64 = u64::MAX;

pub(crate) struct Graph {
    index: Index,
    precision: Precision,
    contexts: usize,
}

fn graph_error(error: impl Display) -> VectorError {
    VectorError::Graph(error.to_string())
}

impl Graph {
    fn kinds(precision: Precision) -> (MetricKind, ScalarKind) {
        match precision {
            // Vectors are unit length, so inner product is cosine and skips two norms.
            Precision::Float32 => (MetricKind::IP, ScalarKind::F32),
            // Quantised vectors are no longer unit length: cosine divides the norms back out.
            Precision::Int8 => (MetricKind::Cos, ScalarKind::I8),
        }
    }

    pub(crate) fn new(config: &VectorIndexConfig) -> Result<Self, VectorError> {
        let mut index = Self::index(config)?;
        Self::install_metric(&mut index, config)?;
        Self::ready(index, config, MIN_GROWTH)
    }

    /// A graph read back from [`Graph::to_bytes`], with the search settings of `config`.
    pub(crate) fn from_bytes(config: &VectorIndexConfig, bytes: &[u8]) -> Result<Self, VectorError> {
        let mut index = Self::index(config)?;
        index.load_from_buffer(bytes).map_err(graph_error)?;
        let (metric, quantization) = Self::kinds(config.precision);
        if index.dimensions() != config.dimensions
            || index.metric_kind() != metric
            || index.scalar_kind() != quantization
        {
            return Err(VectorError::Graph(format!(
                "graph holds {}-dimensional {:?} vectors compared by {:?}; expected {} dimensions in {:?}",
                index.dimensions(),
                index.scalar_kind(),
                index.metric_kind(),
                config.dimensions,
                config.precision,
            )));
        }
        // Loading replaces the settings given at creation with the file's, the metric with
        // usearch's own for the file's kind.
        index.change_expansion_add(config.ef_construction);
        index.change_expansion_search(config.ef_search);
        Self::install_metric(&mut index, config)?;
        let room = index.size() + MIN_GROWTH;
        Self::ready(index, config, room)
    }

    fn index(config: &VectorIndexConfig) -> Result<Index, VectorError> {
        let (metric, quantization) = Self::kinds(config.precision);
        let options = IndexOptions {
            dimensions: config.dimensions,
            metric,
            quantization,
            connectivity: config.connectivity,
            expansion_add: config.ef_construction,
            expansion_search: config.ef_search,
            multi: false,
        };
        Index::new(&options).map_err(graph_error)
    }

    /// Float32 distances through [`dot`]. Called once per `Index`: usearch keeps one closure
    /// per index and would leak a replaced one.
    fn install_metric(index: &mut Index, config: &VectorIndexConfig) -> Result<(), VectorError> {
        if config.precision != Precision::Float32 {
            return Ok(());
        }
        let dimensions = config.dimensions;
        let inner_product = move |a: *const f32, b: *const f32| {
            // SAFETY: usearch calls the metric with two vectors of the index's scalar kind
            // (f32) and dimensions: stored ones, and queries, which `search` checks for length.
            let (a, b) =
                unsafe { (std::slice::from_raw_parts(a, dimensions), std::slice::from_raw_parts(b, dimensions)) };
            1.0 - dot(a, b)
        };
        <f32 as VectorType>::change_metric(index, Box::new(inner_product)).map_err(graph_error)
    }

    fn ready(index: Index, config: &VectorIndexConfig, capacity: usize) -> Result<Self, VectorError> {
        let graph = Self { index, precision: config.precision, contexts: config.max_concurrent_searches };
        graph.reserve(capacity)?;
        Ok(graph)
    }

    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, VectorError> {
        let mut bytes = vec![0; self.index.serialized_length()];
        self.index.save_to_buffer(&mut bytes).map_err(graph_error)?;
        Ok(bytes)
    }

    fn reserve(&self, capacity: usize) -> Result<(), VectorError> {
        self.index.reserve_capacity_and_threads(capacity, self.contexts).map_err(graph_error)
    }

    pub(crate) fn len(&self) -> usize {
        self.index.size()
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        self.index.contains(key)
    }

    /// Adds a unit vector under `key`, which must not be present. Needs exclusive access: it
    /// may grow the graph, which no search may overlap.
    pub(crate) fn add(&self, key: u64, unit: &[f32]) -> Result<(), VectorError> {
        // Removed slots are reused first, so a full graph is one whose live size reached its
        // capacity.
        if self.index.size() >= self.index.capacity() {
            self.reserve((self.index.capacity() * 2).max(MIN_GROWTH))?;
        }
        match self.precision {
            Precision::Float32 => self.index.add(key, unit),
            Precision::Int8 => self.index.add(key, &quantize_i8(unit)),
        }
        .map_err(graph_error)
    }

    pub(crate) fn remove(&self, key: u64) -> Result<(), VectorError> {
        self.index.remove(key).map(drop).map_err(graph_error)
    }

    pub(crate) fn set_ef_search(&self, ef_search: usize) {
        self.index.change_expansion_search(ef_search);
    }

    /// The full-precision vector stored under `key`, for a `Float32` graph (an `Int8` one keeps
    /// only its quantised copy; the index holds the exact vector beside it).
    pub(crate) fn vector(&self, key: u64, dimensions: usize) -> Option<Vec<f32>> {
        if self.precision != Precision::Float32 {
            return None;
        }
        let mut buffer = vec![0.0; dimensions];
        match self.index.get(key, &mut buffer) {
            Ok(found) if found > 0 => Some(buffer),
            _ => None,
        }
    }

    /// [`Graph::search`] with every node admitted: no call back into Rust during the walk.
    pub(crate) fn search_all(&self, query: &[f32], count: usize) -> Result<Vec<(u64, f32)>, VectorError> {
        let found = match self.precision {
            Precision::Float32 => self.index.search(query, count),
            Precision::Int8 => self.index.search(&quantize_i8(query), count),
        }
        .map_err(graph_error)?;
        Ok(similarities(found))
    }

    /// Up to `count` keys nearest to the unit vector `query` among those `admit` accepts,
    /// nearest first, each with the graph's estimate of its cosine similarity. `admit` runs
    /// inside the walk, on every node reached; the walk goes on past rejected nodes until it has
    /// `count` admitted ones or has run out of graph. The caller must hold a search slot.
    pub(crate) fn search(
        &self,
        query: &[f32],
        count: usize,
        admit: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        let found = match self.precision {
            Precision::Float32 => self.index.filtered_search(query, count, admit),
            Precision::Int8 => self.index.filtered_search(&quantize_i8(query), count, admit),
        }
        .map_err(graph_error)?;
        Ok(similarities(found))
    }
}

/// Each key found with its cosine similarity: both metrics are distances of the form
/// 1 − cosine.
fn similarities(found: usearch::ffi::Matches) -> Vec<(u64, f32)> {
    found.keys.into_iter().zip(found.distances).map(|(key, distance)| (key, 1.0 - distance)).collect()
}
