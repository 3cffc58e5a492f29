use std::collections::HashMap;
use std::path::Path;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::attributes::{Attributes, ChunkAttributes, Resolved, Symbol, Symbols, VectorFilter};
use super::config::{Precision, VectorIndexConfig};
use super::error::VectorError;
use super::graph::{Graph, RESERVED_KEY};
use super::numeric::{dot, unit_vector};
use super::persist;
use super::slots::SearchSlots;

/// Chunk vectors with their tenant and metadata, searchable by cosine similarity under a filter.
///
/// Searches run concurrently with each other (up to `max_concurrent_searches` at once, the rest
/// wait); `upsert`, `remove` and `set_ef_search` take an exclusive lock and wait for running
/// searches to finish.
pub struct VectorIndex {
    config: VectorIndexConfig,
    state: RwLock<State>,
    slots: SearchSlots,
}

/// Chunks by key. The search filter looks a key up on every graph node it reaches, so the
/// hasher is a fast one rather than the DoS-resistant default: keys are chunk ids the index's
/// owner assigns, not input from strangers.
pub(crate) type Chunks = HashMap<u64, Chunk, foldhash::fast::RandomState>;

pub(crate) struct State {
    pub(crate) graph: Graph,
    pub(crate) chunks: Chunks,
    pub(crate) symbols: Symbols,
    /// How many chunks each tenant holds: a search by a tenant holding them all needs no
    /// filter in the walk.
    tenants: HashMap<Symbol, usize, foldhash::fast::RandomState>,
}

impl State {
    pub(crate) fn new(graph: Graph, symbols: Symbols) -> Self {
        Self { graph, chunks: Chunks::default(), symbols, tenants: HashMap::default() }
    }

    /// Holds `chunk` under `key`, returning what `key` held before.
    pub(crate) fn insert_chunk(&mut self, key: u64, chunk: Chunk) -> Option<Chunk> {
        *self.tenants.entry(chunk.attributes.tenant).or_default() += 1;
        let before = self.chunks.insert(key, chunk);
        if let Some(old) = &before {
            self.forget_tenant_of(old);
        }
        before
    }

    pub(crate) fn remove_chunk(&mut self, key: u64) -> Option<Chunk> {
        let removed = self.chunks.remove(&key);
        if let Some(old) = &removed {
            self.forget_tenant_of(old);
        }
        removed
    }

    fn forget_tenant_of(&mut self, chunk: &Chunk) {
        if let Some(count) = self.tenants.get_mut(&chunk.attributes.tenant) {
            *count -= 1;
            if *count == 0 {
                self.tenants.remove(&chunk.attributes.tenant);
            }
        }
    }

    /// Whether every chunk held passes `filter`, so the walk may skip checking it.
    fn admits_all(&self, filter: &Resolved) -> bool {
        filter.is_tenant_only() && self.tenants.get(&filter.tenant()).copied() == Some(self.chunks.len())
    }
}

pub(crate) struct Chunk {
    pub(crate) attributes: Attributes,
    /// The unit vector at full precision, kept only when the graph holds quantised ones.
    pub(crate) exact: Option<Box<[f32]>>,
}

impl VectorIndex {
    /// An empty index.
    pub fn new(config: VectorIndexConfig) -> Result<Self, VectorError> {
        config.validate()?;
        let state = State::new(Graph::new(&config)?, Symbols::default());
        Ok(Self::from_parts(config, state))
    }

    fn from_parts(config: VectorIndexConfig, state: State) -> Self {
        let slots = SearchSlots::new(config.max_concurrent_searches);
        Self { config, state: RwLock::new(state), slots }
    }

    /// Reads an index that [`VectorIndex::save`] wrote to `dir`, with one search context per
    /// available core. A missing directory or manifest, a format version this build does not
    /// read, and a file that is truncated or altered are errors, never a panic and never a
    /// silently different index. Cost: reads and checksums every file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, VectorError> {
        Self::open_with_concurrency(dir, VectorIndexConfig::default_concurrency())
    }

    /// [`VectorIndex::open`], allowing `max_concurrent_searches` searches at once.
    pub fn open_with_concurrency(dir: impl AsRef<Path>, max_concurrent_searches: usize) -> Result<Self, VectorError> {
        let (config, state) = persist::read(dir.as_ref(), max_concurrent_searches)?;
        Ok(Self::from_parts(config, state))
    }

    /// Writes the whole index (graph, full-precision vectors, attributes) under `dir`, creating
    /// it if needed. The manifest is replaced last, in one rename, so a save cut short leaves
    /// the previous index readable. Searches go on meanwhile; writes wait.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), VectorError> {
        persist::write(dir.as_ref(), &self.config, &self.read())
    }

    /// The settings the index was created or opened with.
    pub fn config(&self) -> &VectorIndexConfig {
        &self.config
    }

    /// Number of chunks held.
    pub fn len(&self) -> usize {
        self.read().chunks.len()
    }

    /// Whether no chunk is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is held.
    pub fn contains(&self, key: u64) -> bool {
        self.read().chunks.contains_key(&key)
    }

    /// Stores `vector` (normalised to unit length) and `attributes` under `key`, replacing
    /// whatever `key` held. If the graph refuses the new vector, `key` is left absent. Cost:
    /// one graph insertion, about `ef_construction` distance computations per layer.
    pub fn upsert(&self, key: u64, vector: &[f32], attributes: &ChunkAttributes) -> Result<(), VectorError> {
        if key == RESERVED_KEY {
            return Err(VectorError::ReservedKey(key));
        }
        let unit = unit_vector(vector, self.config.dimensions)?;
        let mut state = self.write();
        let state = &mut *state;
        state.remove_chunk(key);
        // Asked of the graph, not of `chunks`: a failed removal may have left it only there.
        if state.graph.contains(key) {
            state.graph.remove(key)?;
        }
        state.graph.add(key, &unit)?;
        let attributes = state.symbols.encode(attributes.tenant.as_str(), attributes.pairs());
        let exact = (self.config.precision == Precision::Int8).then(|| unit.into_boxed_slice());
        state.insert_chunk(key, Chunk { attributes, exact });
        Ok(())
    }

    /// Removes `key`; `false` if it was not there.
    pub fn remove(&self, key: u64) -> Result<bool, VectorError> {
        let mut state = self.write();
        let held = state.remove_chunk(key).is_some();
        if state.graph.contains(key) {
            state.graph.remove(key)?;
        }
        Ok(held)
    }

    /// Every key held, in no particular order.
    pub fn keys(&self) -> Vec<u64> {
        self.read().chunks.keys().copied().collect()
    }

    /// The unit vector stored under `key`, at full precision.
    pub fn vector(&self, key: u64) -> Option<Vec<f32>> {
        Self::vector_in(&self.read(), &self.config, key)
    }

    /// [`VectorIndex::vector`] for each of `keys` that is held, under one read of the index.
    pub fn vectors(&self, keys: impl IntoIterator<Item = u64>) -> Vec<(u64, Vec<f32>)> {
        let state = self.read();
        keys.into_iter().filter_map(|key| Some((key, Self::vector_in(&state, &self.config, key)?))).collect()
    }

    fn vector_in(state: &State, config: &VectorIndexConfig, key: u64) -> Option<Vec<f32>> {
        let chunk = state.chunks.get(&key)?;
        match &chunk.exact {
            Some(exact) => Some(exact.to_vec()),
            None => state.graph.vector(key, config.dimensions),
        }
    }

    /// Changes how many candidates a search keeps: the recall/speed dial, for this process only
    /// (a saved index keeps the value it was created or opened with).
    pub fn set_ef_search(&self, ef_search: usize) {
        self.write().graph.set_ef_search(ef_search.max(1));
    }

    /// The `k` chunks most similar to `query` among those `filter` admits, most similar first,
    /// each with its cosine similarity. Fewer than `k` when fewer are admitted; empty for `k`
    /// of 0. A query of the wrong length, with a NaN or infinity, or all zeros is an error.
    ///
    /// The filter is applied inside the graph walk, so a tenant holding 1% of the vectors still
    /// gets `k` results; the narrower the filter, the more of the graph the walk may visit.
    pub fn search(&self, query: &[f32], k: usize, filter: &VectorFilter) -> Result<Vec<(u64, f32)>, VectorError> {
        let query = unit_vector(query, self.config.dimensions)?;
        let state = self.read();
        // The graph reserves room for every result asked for: never ask for more than it holds.
        let k = k.min(state.chunks.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let Some(filter) = state.symbols.resolve(filter) else {
            return Ok(Vec::new());
        };
        // A deployment with one tenant (the usual case) walks without calling the filter back
        // on every node: the same hits, for less work per node.
        let unfiltered = state.admits_all(&filter);
        let walk = |count: usize| {
            if unfiltered {
                state.graph.search_all(&query, count)
            } else {
                state.graph.search(&query, count, |key| {
                    state.chunks.get(&key).is_some_and(|chunk| filter.admits(&chunk.attributes))
                })
            }
        };
        let mut hits = {
            let _slot = self.slots.acquire();
            match self.config.precision {
                Precision::Float32 => walk(k)?,
                Precision::Int8 => {
                    let candidates = k.saturating_mul(self.config.rescore_factor).min(state.chunks.len());
                    rescore(&state.chunks, &query, walk(candidates)?)
                }
            }
        };
        // Ties broken by key, so that equal scores come back in the same order every time.
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hits.truncate(k);
        Ok(hits)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Nothing panics while holding the lock; were something to, the worst it could leave is
        // a chunk missing from the graph or the attributes, which searches already tolerate.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The graph's candidates with their exact cosine similarity to `query`.
fn rescore(chunks: &Chunks, query: &[f32], candidates: Vec<(u64, f32)>) -> Vec<(u64, f32)> {
    candidates
        .into_iter()
        .filter_map(|(key, _)| {
            let exact = chunks.get(&key)?.exact.as_deref()?;
            Some((key, dot(query, exact)))
        })
        .collect()
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex").field("config", &self.config).field("len", &self.len()).finish()
    }
}
