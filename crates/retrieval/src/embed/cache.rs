//! A bounded in-memory cache of embeddings, least recently used out first.
//!
//! Invariant: an entry is found only by the same model id and the same text, byte for
//! byte. The key is a SHA-256 of both, so the cache holds no customer text and a collision
//! (which would hand back another text's vector) is not a practical concern.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lru::LruCache;
use serde::Serialize;
use sha2::{Digest, Sha256};

type Key = [u8; 32];

/// Hits and misses since the cache was made, and how full it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub capacity: usize,
}

/// Embeddings by (model id, text). Safe to share between threads; each lookup holds a lock
/// for a hash-map operation only.
pub struct EmbeddingCache {
    /// `None` when the capacity is zero: caching is off, every lookup a miss.
    entries: Option<Mutex<LruCache<Key, Vec<f32>>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for EmbeddingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingCache").field("stats", &self.stats()).finish()
    }
}

impl EmbeddingCache {
    /// A cache of at most `capacity` vectors; 0 turns caching off. Memory: about
    /// `capacity × (dimension × 4 + 80)` bytes, 1.6 KB a vector for a 384-dimensional model.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The vector stored for `text` under `model`, counting a hit or a miss.
    pub fn get(&self, model: &str, text: &str) -> Option<Vec<f32>> {
        let found = self.entries.as_ref().and_then(|entries| {
            let mut entries = entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            entries.get(&key(model, text)).cloned()
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `vector` for `text` under `model`, evicting the least recently used entry
    /// when full.
    pub fn put(&self, model: &str, text: &str, vector: Vec<f32>) {
        if let Some(entries) = &self.entries {
            let mut entries = entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            entries.put(key(model, text), vector);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let entries = self
            .entries
            .as_ref()
            .map_or(0, |entries| entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len());
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            capacity: self.capacity,
        }
    }
}

/// The model id is length-prefixed so that no (model, text) pair can run into another's
/// bytes ("a" + "bc" and "ab" + "c" hash apart).
fn key(model: &str, text: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update((model.len() as u64).to_le_bytes());
    hasher.update(model.as_bytes());
    hasher.update(text.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_found_only_under_the_model_that_embedded_it() {
        let cache = EmbeddingCache::new(4);
        cache.put("local/a", "hello", vec![1.0]);
        assert_eq!(cache.get("local/a", "hello"), Some(vec![1.0]));
        assert_eq!(cache.get("local/b", "hello"), None);
        assert_eq!(cache.get("local/a", "hello "), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 1));
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = EmbeddingCache::new(2);
        cache.put("m", "one", vec![1.0]);
        cache.put("m", "two", vec![2.0]);
        assert!(cache.get("m", "one").is_some());
        cache.put("m", "three", vec![3.0]);
        assert!(cache.get("m", "two").is_none());
        assert!(cache.get("m", "one").is_some());
        assert!(cache.get("m", "three").is_some());
    }

    #[test]
    fn a_zero_capacity_cache_stores_nothing() {
        let cache = EmbeddingCache::new(0);
        cache.put("m", "one", vec![1.0]);
        assert_eq!(cache.get("m", "one"), None);
        assert_eq!(cache.stats().entries, 0);
    }
}
