//! The knowledge base: every tenant's documents cut into parents and children, the children
//! indexed twice (BM25 and vectors), searched by both, fused, diversified, optionally
//! reranked, and turned into the numbered passages a prompt is given.
//!
//! The knowledge base holds what it indexes and nothing else: the store owns documents and
//! chunks, and the caller (the server) decides what to insert and remove. A document is
//! replaced as a whole; its chunks' keys are derived from (tenant, document, ordinal), so a
//! saved vector index lines up with the same documents when it is opened again.
//!
//! Invariant: a search is one tenant's; every chunk it returns is in both indexes and the
//! catalog, with the document it came from; `version(tenant)` changes whenever what a
//! search of that tenant could return changes.

mod context;
mod search;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use concierge_core::TenantId;
use sha2::{Digest, Sha256};

use crate::article::{split_sections, Article};
use crate::chunk::{chunk_sections, estimate_tokens, ChunkingConfig, Chunks, Parent};
use crate::embed::{EmbedError, Embedder};
use crate::keyword::{KeywordChunk, KeywordIndex, SearchError};
use crate::vector::{ChunkAttributes, VectorError, VectorIndex, VectorIndexConfig};

pub use context::{ContextConfig, Hit};
pub use search::{
    RankedScore, Reranker, ScoredChunk, SearchMode, SearchRequest, SearchResults, SearchSettings, StageScores,
    StageTimings,
};

/// Why a knowledge-base operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Keyword(#[from] SearchError),
    #[error(transparent)]
    Vector(#[from] VectorError),
    #[error("reranker: {0}")]
    Rerank(String),
    #[error("{0}")]
    Invalid(String),
}

/// A document ready to be indexed: its article (for metadata), its chunks and one vector per
/// child, in the children's order. `revision` names this version of the document and the
/// model its vectors came from (a content hash, say): chunk keys derive from it, so vectors
/// of another revision are never taken for this one's.
#[derive(Debug, Clone)]
pub struct IndexedDocument {
    pub article: Article,
    pub revision: String,
    pub chunks: Chunks,
    pub vectors: Vec<Vec<f32>>,
}

/// What the knowledge base keeps of a document.
#[derive(Debug, Clone)]
pub(crate) struct DocumentEntry {
    pub(crate) title: String,
    pub(crate) category: String,
    pub(crate) url: Option<String>,
    pub(crate) parents: Vec<Parent>,
    pub(crate) keys: Vec<u64>,
}

/// What the knowledge base keeps of an indexed child.
#[derive(Debug, Clone)]
pub(crate) struct ChildEntry {
    pub(crate) tenant: TenantId,
    pub(crate) document: String,
    pub(crate) parent: usize,
    pub(crate) heading: String,
    pub(crate) text: String,
}

#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) documents: HashMap<(TenantId, String), DocumentEntry>,
    pub(crate) children: HashMap<u64, ChildEntry>,
    versions: HashMap<TenantId, u64>,
}

/// Every tenant's searchable documents.
pub struct KnowledgeBase {
    embedder: Arc<dyn Embedder>,
    keyword: KeywordIndex,
    vectors: VectorIndex,
    catalog: RwLock<Catalog>,
    chunking: ChunkingConfig,
    settings: SearchSettings,
    tenant_settings: HashMap<TenantId, SearchSettings>,
    reranker: Option<Arc<dyn Reranker>>,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("embedder", &self.embedder.id())
            .field("chunks", &self.vectors.len())
            .field("settings", &self.settings)
            .finish()
    }
}

impl KnowledgeBase {
    /// An empty knowledge base embedding with `embedder` and cutting documents by `chunking`.
    pub fn new(
        embedder: Arc<dyn Embedder>,
        chunking: ChunkingConfig,
        settings: SearchSettings,
        vectors: VectorIndexConfig,
    ) -> Result<Self, KnowledgeError> {
        let vectors = VectorIndex::new(vectors)?;
        Self::with_vectors(embedder, chunking, settings, vectors)
    }

    /// As [`KnowledgeBase::new`], on a vector index already holding this knowledge base's
    /// vectors (opened from disk). Documents are then inserted with
    /// [`KnowledgeBase::insert_indexed`], which reuses the vectors under their keys.
    pub fn with_vectors(
        embedder: Arc<dyn Embedder>,
        chunking: ChunkingConfig,
        settings: SearchSettings,
        vectors: VectorIndex,
    ) -> Result<Self, KnowledgeError> {
        chunking.validate().map_err(KnowledgeError::Invalid)?;
        settings.validate().map_err(KnowledgeError::Invalid)?;
        if vectors.config().dimensions != embedder.dimension() {
            return Err(KnowledgeError::Invalid(format!(
                "the vector index holds {}-dimensional vectors; {} gives {}",
                vectors.config().dimensions,
                embedder.id(),
                embedder.dimension()
            )));
        }
        Ok(Self {
            embedder,
            keyword: KeywordIndex::new()?,
            vectors,
            catalog: RwLock::new(Catalog::default()),
            chunking,
            settings,
            tenant_settings: HashMap::new(),
            reranker: None,
        })
    }

    /// Search settings for one tenant, instead of the defaults.
    pub fn with_tenant_settings(mut self, tenant: TenantId, settings: SearchSettings) -> Result<Self, KnowledgeError> {
        settings.validate().map_err(|e| KnowledgeError::Invalid(format!("tenant {tenant}: {e}")))?;
        self.tenant_settings.insert(tenant, settings);
        Ok(self)
    }

    /// A second-stage reranker, used by searches whose settings ask for it.
    pub fn with_reranker(mut self, reranker: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(reranker);
        self
    }

    /// The embedding model, for other parts that embed text the same way (the router).
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// The embedding model's id, stored beside every persisted vector.
    pub fn embedder_id(&self) -> &str {
        self.embedder.id()
    }

    pub fn chunking(&self) -> &ChunkingConfig {
        &self.chunking
    }

    /// The settings searches of `tenant` use.
    pub fn settings(&self, tenant: &TenantId) -> &SearchSettings {
        self.tenant_settings.get(tenant).unwrap_or(&self.settings)
    }

    /// Cuts `article` into parents and children.
    pub fn chunk(&self, article: &Article) -> Chunks {
        chunk_sections(&split_sections(article), &self.chunking, &estimate_tokens)
    }

    /// Embeds the children of `article`, each headed by its title and section so that a
    /// child is found by what its article is about, not only by its own words.
    pub async fn embed_children(&self, article: &Article, chunks: &Chunks) -> Result<Vec<Vec<f32>>, KnowledgeError> {
        let texts: Vec<String> = chunks
            .children
            .iter()
            .map(|child| {
                let heading = chunks.parents.get(child.parent).map_or("", |p| p.heading.as_str());
                embedding_text(&article.title, heading, &child.text)
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(self.embedder.embed(&refs).await?)
    }

    /// Chunks and embeds `article`, ready for [`KnowledgeBase::insert`].
    pub async fn prepare(&self, article: Article, revision: String) -> Result<IndexedDocument, KnowledgeError> {
        let chunks = self.chunk(&article);
        let vectors = self.embed_children(&article, &chunks).await?;
        Ok(IndexedDocument { article, revision, chunks, vectors })
    }

    /// Indexes `document` for `tenant`, replacing every chunk it had before.
    pub fn insert(&self, tenant: &TenantId, document: IndexedDocument) -> Result<(), KnowledgeError> {
        if document.vectors.len() != document.chunks.children.len() {
            return Err(KnowledgeError::Invalid(format!(
                "document {}: {} vectors for {} children",
                document.article.id,
                document.vectors.len(),
                document.chunks.children.len()
            )));
        }
        self.insert_with(tenant, &document.article, &document.revision, &document.chunks, |i, key, attributes| {
            self.vectors.upsert(key, &document.vectors[i], attributes)
        })
    }

    /// Indexes `revision` of `article` (cut into `chunks`) for `tenant`, whose vectors the
    /// vector index already holds under their keys; false, indexing nothing, when any is
    /// missing.
    pub fn insert_indexed(
        &self,
        tenant: &TenantId,
        article: &Article,
        revision: &str,
        chunks: &Chunks,
    ) -> Result<bool, KnowledgeError> {
        let all_held =
            chunks.children.iter().all(|c| self.vectors.contains(chunk_key(tenant, &article.id, revision, c.ordinal)));
        if !all_held {
            return Ok(false);
        }
        self.insert_with(tenant, article, revision, chunks, |_, _, _| Ok(()))?;
        Ok(true)
    }

    /// Removes from the vector index every vector no indexed chunk has: what a reopened
    /// index still held of documents changed or deleted since it was saved. Returns how many.
    pub fn prune_vectors(&self) -> Result<usize, KnowledgeError> {
        let catalog = self.read();
        let mut removed = 0;
        for key in self.vectors.keys() {
            if !catalog.children.contains_key(&key) {
                self.vectors.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn insert_with(
        &self,
        tenant: &TenantId,
        article: &Article,
        revision: &str,
        chunks: &Chunks,
        mut put_vector: impl FnMut(usize, u64, &ChunkAttributes) -> Result<(), VectorError>,
    ) -> Result<(), KnowledgeError> {
        let mut attributes = ChunkAttributes::new(tenant.clone()).with("category", &article.category);
        if let Some(product) = &article.product {
            attributes = attributes.with("product", product);
        }
        let keys: Vec<u64> =
            chunks.children.iter().map(|c| chunk_key(tenant, &article.id, revision, c.ordinal)).collect();
        let mut catalog = self.write();
        // Chunks the document had and no longer has leave the vector index first.
        if let Some(old) = catalog.documents.get(&(tenant.clone(), article.id.clone())) {
            for key in old.keys.iter().filter(|k| !keys.contains(k)) {
                self.vectors.remove(*key)?;
            }
        }
        for (i, &key) in keys.iter().enumerate() {
            put_vector(i, key, &attributes)?;
        }
        let mut metadata = vec![("category", article.category.as_str())];
        if let Some(product) = &article.product {
            metadata.push(("product", product.as_str()));
        }
        let keyword: Vec<KeywordChunk<'_>> = chunks
            .children
            .iter()
            .zip(&keys)
            .map(|(child, &key)| KeywordChunk {
                key,
                title: &article.title,
                heading: chunks.parents.get(child.parent).map_or("", |p| p.heading.as_str()),
                text: &child.text,
                metadata: &metadata,
            })
            .collect();
        self.keyword.replace(tenant.as_str(), &article.id, &keyword)?;
        let old_keys = catalog
            .documents
            .insert(
                (tenant.clone(), article.id.clone()),
                DocumentEntry {
                    title: article.title.clone(),
                    category: article.category.clone(),
                    url: article.url.clone(),
                    parents: chunks.parents.clone(),
                    keys: keys.clone(),
                },
            )
            .map(|old| old.keys)
            .unwrap_or_default();
        for key in old_keys {
            catalog.children.remove(&key);
        }
        for (child, key) in chunks.children.iter().zip(keys) {
            let heading = chunks.parents.get(child.parent).map_or_else(String::new, |p| p.heading.clone());
            catalog.children.insert(
                key,
                ChildEntry {
                    tenant: tenant.clone(),
                    document: article.id.clone(),
                    parent: child.parent,
                    heading,
                    text: child.text.clone(),
                },
            );
        }
        *catalog.versions.entry(tenant.clone()).or_default() += 1;
        Ok(())
    }

    /// Removes document `id` of `tenant` from every index; false if it was not there.
    pub fn remove(&self, tenant: &TenantId, id: &str) -> Result<bool, KnowledgeError> {
        let mut catalog = self.write();
        let Some(entry) = catalog.documents.remove(&(tenant.clone(), id.to_owned())) else {
            return Ok(false);
        };
        self.keyword.replace(tenant.as_str(), id, &[])?;
        for key in &entry.keys {
            self.vectors.remove(*key)?;
            catalog.children.remove(key);
        }
        *catalog.versions.entry(tenant.clone()).or_default() += 1;
        Ok(true)
    }

    /// The ids of `tenant`'s documents, sorted.
    pub fn documents(&self, tenant: &TenantId) -> Vec<String> {
        let catalog = self.read();
        let mut ids: Vec<String> =
            catalog.documents.keys().filter(|(t, _)| t == tenant).map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids
    }

    /// Whether document `id` of `tenant` is indexed.
    pub fn contains(&self, tenant: &TenantId, id: &str) -> bool {
        self.read().documents.contains_key(&(tenant.clone(), id.to_owned()))
    }

    /// How many children are indexed, every tenant together.
    pub fn len(&self) -> usize {
        self.read().children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes whenever a search of `tenant` could give a different answer: the tag of
    /// caches that hold answers built from this knowledge base.
    pub fn version(&self, tenant: &TenantId) -> u64 {
        self.read().versions.get(tenant).copied().unwrap_or(0)
    }

    /// Writes the vector index under `dir` (see [`VectorIndex::save`]).
    pub fn save_vectors(&self, dir: &Path) -> Result<(), KnowledgeError> {
        Ok(self.vectors.save(dir)?)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a child is embedded as: headed by its article's title and section.
fn embedding_text(title: &str, heading: &str, text: &str) -> String {
    if heading.is_empty() || heading == title {
        format!("{title}\n{text}")
    } else {
        format!("{title} — {heading}\n{text}")
    }
}

/// The key of child `ordinal` of `revision` of document `id` of `tenant`: stable across
/// runs, so a saved vector index matches the documents it was built from, and new for every
/// revision. 64 bits of SHA-256; a collision among a million chunks has odds of about 3 in
/// 10^8.
pub fn chunk_key(tenant: &TenantId, id: &str, revision: &str, ordinal: usize) -> u64 {
    let mut hasher = Sha256::new();
    let ordinal = (ordinal as u64).to_le_bytes();
    for part in [tenant.as_str().as_bytes(), id.as_bytes(), revision.as_bytes(), &ordinal] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&digest[..8]);
    // u64::MAX is the vector index's reserved key.
    u64::from_le_bytes(bytes).min(u64::MAX - 1)
}

#[cfg(test)]
mod tests;
