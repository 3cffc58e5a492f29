//! The knowledge service: documents in the store, the same documents searchable in the
//! knowledge base, and the two kept in step.
//!
//! The store is the truth: every document with its parents and children. The knowledge
//! base (BM25 and vectors) is rebuilt from it at start-up; the vector index is reopened
//! from `knowledge.data_dir` when it was saved, so only chunks it lacks are embedded again.
//! Ingest (start-up folder, `concierge ingest`, the API) skips a document whose content hash
//! is unchanged, and otherwise writes the store first, then the indexes.
//!
//! Invariant: writes are serialised (one at a time), so the store and the indexes never
//! disagree about which revision of a document is current once a write has returned.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concierge_core::{Chunk, Document, DocumentId, TenantId};
use concierge_retrieval::{
    load_folder, parse_document, parse_document_bytes, Article, ArticleError, BatchingConfig, BatchingEmbedder, Child,
    Chunks, EmbedError, Embedder, IndexedDocument, KnowledgeBase, LocalEmbedder, LocalEmbedderConfig, Parent,
    RemoteEmbedder, RemoteEmbedderConfig, SearchRequest, SearchResults, SourceDefaults, SourceFormat, VectorIndex,
    VectorIndexConfig,
};
use concierge_store::Store;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{EmbedderConfig, KnowledgeConfig, Secrets};

/// Bumped whenever chunking or what is stored per chunk changes, so every document's hash
/// changes with it and re-ingestion rewrites it.
const LAYOUT: &str = "parent-child-1";

/// Where a document came from, kept in its metadata as `source`.
pub const SOURCE_API: &str = "api";

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Article(#[from] ArticleError),
    #[error(transparent)]
    Store(#[from] concierge_store::StoreError),
    #[error(transparent)]
    Index(#[from] concierge_retrieval::KnowledgeError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("knowledge base: {0}")]
    Invalid(String),
}

/// What ingesting one document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IngestOutcome {
    Added,
    Updated,
    Unchanged,
}

/// A document as the API lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DocumentSummary {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub category: Option<String>,
    pub product: Option<String>,
    pub source: Option<String>,
    pub version: i64,
    pub updated_at: String,
}

/// A document sent to `POST /v1/documents`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    /// The company's own id: 1 to 200 of `A-Z a-z 0-9 . _ - /`, e.g. `billing/refunds`.
    pub id: String,
    /// The document's text, for the text formats.
    #[serde(default)]
    pub content: Option<String>,
    /// The document's bytes in standard base64, for a PDF (or a text format's file as is).
    #[serde(default)]
    pub content_base64: Option<String>,
    /// `markdown` (default; may carry `+++` front matter), `text`, `html` or `pdf`, or a
    /// media type such as `text/html` or `application/pdf`.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

const MAX_ID_CHARS: usize = 200;
const MAX_FIELD_CHARS: usize = 500;

/// Whether `id` is a document id the API accepts; the problem when not.
pub fn check_document_id(id: &str) -> Result<(), KnowledgeError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS || !id.chars().all(allowed) {
        return Err(KnowledgeError::Invalid(format!(
            "id must be 1 to {MAX_ID_CHARS} of the characters A-Z a-z 0-9 . _ - /"
        )));
    }
    if id.starts_with('/') || id.ends_with('/') || id.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(KnowledgeError::Invalid("id must not start or end with `/`, nor hold `//` or `..`".into()));
    }
    Ok(())
}

impl NewDocument {
    /// The article this document is, checked: a known format, a non-blank body, short
    /// metadata, an http(s) URL.
    pub fn into_article(mut self) -> Result<Article, KnowledgeError> {
        check_document_id(&self.id)?;
        let format = match self.format.as_deref() {
            None => SourceFormat::Markdown,
            Some(name) => SourceFormat::from_name(name).ok_or_else(|| {
                KnowledgeError::Invalid(format!("format `{name}` is not one of markdown, text, html, pdf"))
            })?,
        };
        enum Body {
            Text(String),
            Bytes(Vec<u8>),
        }
        let body = match (self.content.take(), self.content_base64.take()) {
            (Some(_), None) if format.is_binary() => {
                return Err(KnowledgeError::Invalid("a pdf document is sent as `content_base64`".into()));
            }
            (Some(text), None) => Body::Text(text),
            (None, Some(encoded)) => {
                use base64::Engine as _;
                Body::Bytes(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|e| KnowledgeError::Invalid(format!("content_base64 is not standard base64: {e}")))?,
                )
            }
            _ => {
                return Err(KnowledgeError::Invalid(
                    "give exactly one of `content` (text) and `content_base64` (bytes, e.g. a PDF)".into(),
                ))
            }
        };
        for (name, value) in [("title", &self.title), ("category", &self.category), ("product", &self.product)] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty() || v.chars().count() > MAX_FIELD_CHARS) {
                return Err(KnowledgeError::Invalid(format!("{name} must be 1 to {MAX_FIELD_CHARS} characters")));
            }
        }
        if let Some(url) = &self.url {
            let ok = (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2000;
            if !ok {
                return Err(KnowledgeError::Invalid("url must be an http(s) URL of at most 2000 characters".into()));
            }
        }
        let defaults =
            SourceDefaults { id: self.id.clone(), title: None, category: "general".into(), product: None, url: None };
        let origin = PathBuf::from(format!("document {}", self.id));
        let mut article = match body {
            Body::Text(text) => parse_document(&origin, &text, format, &defaults)?,
            Body::Bytes(bytes) => parse_document_bytes(&origin, &bytes, format, &defaults)?,
        };
        // What the request says wins over the document's own front matter.
        article.id = self.id;
        article.title = self.title.unwrap_or(article.title);
        article.category = self.category.unwrap_or(article.category);
        article.product = self.product.or(article.product);
        article.url = self.url.or(article.url);
        Ok(article)
    }
}

/// What ingesting many documents did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    pub documents: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Children indexed, every tenant's together.
    pub chunks: usize,
}

impl IngestSummary {
    /// Counts one document's outcome.
    pub fn count(&mut self, outcome: IngestOutcome) {
        self.documents += 1;
        match outcome {
            IngestOutcome::Added => self.added += 1,
            IngestOutcome::Updated => self.updated += 1,
            IngestOutcome::Unchanged => self.unchanged += 1,
        }
    }

    /// Adds the document counts of `other`.
    pub fn add(&mut self, other: &IngestSummary) {
        self.documents += other.documents;
        self.added += other.added;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.removed += other.removed;
    }
}

/// What opening the knowledge base found in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LoadStats {
    pub documents: usize,
    /// Documents whose vectors the saved index held.
    pub reused: usize,
    /// Documents embedded again.
    pub embedded: usize,
}

/// The store's documents and the knowledge base searching them.
pub struct Knowledge {
    kb: KnowledgeBase,
    loaded: std::sync::Mutex<LoadStats>,
    store: Arc<dyn Store>,
    config: KnowledgeConfig,
    writes: tokio::sync::Mutex<()>,
    /// The vector index changed since it was last saved.
    dirty: AtomicBool,
}

impl Knowledge {
    /// The embedder, the knowledge base (its vector index reopened from `data_dir` when it
    /// was saved there), and every document `tenants` hold in the store indexed.
    pub async fn open(
        store: Arc<dyn Store>,
        config: &KnowledgeConfig,
        secrets: &Secrets,
        tenants: &[TenantId],
    ) -> Result<Self, KnowledgeError> {
        let embedder = embedder(config, secrets)?;
        let settings = config.search.clone();
        let saved = config.data_dir.as_deref().filter(|dir| dir.join("manifest.json").is_file());
        let reopened = saved.and_then(|dir| match VectorIndex::open(dir) {
            Ok(index) if index.config().dimensions == embedder.dimension() => Some(index),
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "saved vectors are of another model; embedding again");
                None
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "saved vectors unreadable; embedding again");
                None
            }
        });
        let mut kb = match reopened {
            Some(index) => KnowledgeBase::with_vectors(Arc::clone(&embedder), config.chunking, settings, index)?,
            None => {
                let vectors = VectorIndexConfig::new(embedder.dimension()).with_precision(config.precision);
                KnowledgeBase::new(Arc::clone(&embedder), config.chunking, settings, vectors)?
            }
        };
        if let Some(dir) = &config.reranker {
            let reranker = concierge_retrieval::rerank::CrossEncoder::load(
                concierge_retrieval::rerank::CrossEncoderConfig::new(dir),
            )
            .map_err(|e| KnowledgeError::Invalid(format!("knowledge.reranker: {e}")))?;
            tracing::info!(reranker = reranker.id(), "reranker loaded");
            kb = kb.with_reranker(Arc::new(reranker));
        }
        for (tenant, overrides) in &config.tenants {
            kb = kb.with_tenant_settings(tenant.clone(), overrides.search.clone())?;
        }
        let knowledge = Self {
            kb,
            loaded: std::sync::Mutex::new(LoadStats::default()),
            store,
            config: config.clone(),
            writes: tokio::sync::Mutex::new(()),
            dirty: AtomicBool::new(false),
        };
        for tenant in tenants {
            knowledge.load_tenant(tenant).await?;
        }
        let pruned = knowledge.kb.prune_vectors()?;
        if pruned > 0 {
            knowledge.dirty.store(true, Ordering::Relaxed);
        }
        knowledge.save()?;
        Ok(knowledge)
    }

    /// What start-up found: documents reused from the saved vector index or embedded again.
    pub fn load_stats(&self) -> LoadStats {
        *self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn base(&self) -> &KnowledgeBase {
        &self.kb
    }

    pub fn config(&self) -> &KnowledgeConfig {
        &self.config
    }

    /// Indexes every document `tenant` holds in the store, embedding only what the vector
    /// index lacks.
    async fn load_tenant(&self, tenant: &TenantId) -> Result<(), KnowledgeError> {
        let documents = self.store.documents(tenant).await?;
        let (mut reused, mut embedded) = (0, 0);
        for document in documents {
            let rows = self.store.chunks(document.id).await?;
            let article = article_of(&document);
            let Some(chunks) = chunks_of(&rows) else {
                tracing::warn!(document = %document.external_id, "stored without chunks; ingest it again");
                continue;
            };
            let revision = self.revision(&document.content_hash);
            if self.kb.insert_indexed(tenant, &article, &revision, &chunks)? {
                reused += 1;
                continue;
            }
            let vectors = self.kb.embed_children(&article, &chunks).await?;
            self.kb.insert(tenant, IndexedDocument { article, revision, chunks, vectors })?;
            self.dirty.store(true, Ordering::Relaxed);
            embedded += 1;
        }
        tracing::info!(tenant = %tenant, reused, embedded, chunks = self.kb.len(), "knowledge base indexed");
        let mut stats = self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        stats.documents += reused + embedded;
        stats.reused += reused;
        stats.embedded += embedded;
        Ok(())
    }

    /// Ingests every document under `dir` for `tenant` (see [`load_folder`]) and removes the
    /// documents that came from `dir` before and are no longer there. `progress(done, total)`
    /// is called after each document.
    pub async fn ingest_folder(
        &self,
        tenant: &TenantId,
        dir: &Path,
        progress: &(dyn Fn(usize, usize, &str) + Sync),
    ) -> Result<IngestSummary, KnowledgeError> {
        let articles = load_folder(dir)?;
        let source = folder_source(dir);
        let mut summary = IngestSummary::default();
        let present: Vec<String> = articles.iter().map(|a| a.id.clone()).collect();
        for (i, article) in articles.into_iter().enumerate() {
            let id = article.id.clone();
            summary.count(self.ingest(tenant, article, &source).await?);
            progress(i + 1, present.len(), &id);
        }
        for document in self.store.documents(tenant).await? {
            let from_here = document.metadata.get("source").and_then(|s| s.as_str()) == Some(source.as_str());
            if from_here && !present.contains(&document.external_id) {
                self.delete(tenant, &document.external_id).await?;
                summary.removed += 1;
            }
        }
        summary.chunks = self.kb.len();
        self.save()?;
        Ok(summary)
    }

    /// Ingests one file (any format read), recording `source` as where it came from.
    pub async fn ingest_file(&self, tenant: &TenantId, path: &Path) -> Result<IngestOutcome, KnowledgeError> {
        let format = SourceFormat::from_path(path).ok_or_else(|| {
            KnowledgeError::Invalid(format!("{}: not a Markdown, text, HTML or PDF file", path.display()))
        })?;
        let bytes = std::fs::read(path).map_err(|source| ArticleError::Read { path: path.to_owned(), source })?;
        let root = path.parent().unwrap_or(Path::new(""));
        let article = parse_document_bytes(path, &bytes, format, &SourceDefaults::for_file(root, path))?;
        let outcome = self.ingest(tenant, article, &file_source(path)).await?;
        self.save()?;
        Ok(outcome)
    }

    /// Records `article` for `tenant` in the store and the indexes, unless its content is
    /// unchanged.
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        article: Article,
        source: &str,
    ) -> Result<IngestOutcome, KnowledgeError> {
        let _write = self.writes.lock().await;
        let hash = content_hash(&article, &self.config);
        let existing = self.store.document(tenant, &article.id).await?;
        if let Some(existing) = existing.as_ref().filter(|d| d.content_hash == hash) {
            if self.kb.contains(tenant, &existing.external_id) {
                return Ok(IngestOutcome::Unchanged);
            }
        }
        let revision = self.revision(&hash);
        let indexed = self.kb.prepare(article, revision).await?;
        let article = &indexed.article;
        let document = Document {
            id: existing.as_ref().map_or_else(DocumentId::new, |d| d.id),
            tenant_id: tenant.clone(),
            external_id: article.id.clone(),
            title: article.title.clone(),
            url: article.url.clone(),
            metadata: json!({
                "category": article.category,
                "product": article.product,
                "updated": article.updated,
                "source": source,
            }),
            content_hash: hash,
            version: existing.as_ref().map_or(1, |d| d.version + 1),
            updated_at: concierge_core::now(),
        };
        self.store.upsert_document(&document, &chunk_rows(document.id, &indexed.chunks)).await?;
        self.kb.insert(tenant, indexed)?;
        self.dirty.store(true, Ordering::Relaxed);
        Ok(if existing.is_some() { IngestOutcome::Updated } else { IngestOutcome::Added })
    }

    /// Removes document `id` of `tenant` from the store and every index; false if unknown.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<bool, KnowledgeError> {
        let _write = self.writes.lock().await;
        let stored = self.store.delete_document(tenant, id).await?;
        let indexed = self.kb.remove(tenant, id)?;
        if indexed {
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok(stored || indexed)
    }

    /// `tenant`'s documents, sorted by id.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<DocumentSummary>, KnowledgeError> {
        let mut documents: Vec<DocumentSummary> = self.store.documents(tenant).await?.iter().map(summary_of).collect();
        documents.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(documents)
    }

    /// One document of `tenant`, if it exists.
    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Option<DocumentSummary>, KnowledgeError> {
        Ok(self.store.document(tenant, id).await?.as_ref().map(summary_of))
    }

    pub async fn search(&self, request: &SearchRequest) -> Result<SearchResults, KnowledgeError> {
        Ok(self.kb.search(request).await?)
    }

    /// Saves the vector index under `data_dir` if it changed since the last save.
    pub fn save(&self) -> Result<(), KnowledgeError> {
        let Some(dir) = &self.config.data_dir else { return Ok(()) };
        if self.dirty.swap(false, Ordering::Relaxed) {
            if let Err(error) = self.kb.save_vectors(dir) {
                self.dirty.store(true, Ordering::Relaxed);
                return Err(error.into());
            }
        }
        Ok(())
    }

    /// Saves the vector index every `every` while it changes, until the process ends.
    pub fn keep_saved(self: &Arc<Self>, every: Duration) {
        let knowledge = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(knowledge) = knowledge.upgrade() else { return };
                if let Err(error) = knowledge.save() {
                    tracing::warn!(%error, "could not save the vector index; will retry");
                }
            }
        });
    }

    /// The revision chunk keys derive from: the content and the embedding model together.
    fn revision(&self, content_hash: &str) -> String {
        format!("{content_hash}/{}", self.kb.embedder_id())
    }
}

/// The embedder `config` names, behind dynamic batching and a cache.
pub fn embedder(config: &KnowledgeConfig, secrets: &Secrets) -> Result<Arc<dyn Embedder>, KnowledgeError> {
    let inner: Arc<dyn Embedder> = match &config.embedder {
        EmbedderConfig::Local { path, threads } => {
            let mut local = LocalEmbedderConfig::all_minilm_l6_v2(path.parent().unwrap_or(Path::new(".")));
            local.model_dir = path.clone();
            if *threads > 0 {
                local.threads = *threads;
            }
            Arc::new(LocalEmbedder::load(local)?)
        }
        EmbedderConfig::Openai { base_url, model, dimension, api_key_env, deadline_secs } => {
            Arc::new(RemoteEmbedder::new(RemoteEmbedderConfig {
                base_url: base_url.clone(),
                model: model.clone(),
                api_key: api_key_env.as_deref().and_then(|var| secrets.llm_key(var)).cloned(),
                dimension: *dimension,
                deadline: Duration::from_secs(*deadline_secs),
            })?)
        }
    };
    let batching = BatchingConfig { max_batch: 64, ..BatchingConfig::default() };
    Ok(Arc::new(BatchingEmbedder::start(inner, batching)?))
}

/// `folder:<absolute path>`: documents ingested from one folder, removed from the knowledge
/// base when they disappear from it.
fn folder_source(dir: &Path) -> String {
    format!("folder:{}", absolute(dir).display())
}

fn file_source(path: &Path) -> String {
    format!("file:{}", absolute(path).display())
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// A hash of everything that changes what the article says, how it is cited and how it is
/// cut.
fn content_hash(article: &Article, config: &KnowledgeConfig) -> String {
    let mut hasher = Sha256::new();
    let chunking = format!("{LAYOUT}:{:?}", config.chunking);
    for part in [&article.id, &article.title, &article.category, &article.body, &chunking] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for part in [&article.product, &article.url, &article.updated] {
        hasher.update(part.as_deref().unwrap_or("").as_bytes());
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())
}

/// The store's rows of a document: parents first (no parent), then children (their parent's
/// ordinal), ordinals running on from the parents'.
fn chunk_rows(document: DocumentId, chunks: &Chunks) -> Vec<Chunk> {
    let parents = chunks.parents.len();
    let parent_rows = chunks.parents.iter().map(|p| Chunk {
        document_id: document,
        ordinal: p.ordinal as i64,
        parent: None,
        heading: p.heading.clone(),
        text: p.text.clone(),
        token_count: p.tokens as i64,
    });
    let child_rows = chunks.children.iter().map(|c| Chunk {
        document_id: document,
        ordinal: (parents + c.ordinal) as i64,
        parent: Some(c.parent as i64),
        heading: chunks.parents.get(c.parent).map_or_else(String::new, |p| p.heading.clone()),
        text: c.text.clone(),
        token_count: c.tokens as i64,
    });
    parent_rows.chain(child_rows).collect()
}

/// The chunks `chunk_rows` wrote, read back; None for a document stored without children.
fn chunks_of(rows: &[Chunk]) -> Option<Chunks> {
    let mut parents: Vec<Parent> = rows
        .iter()
        .filter(|r| r.parent.is_none())
        .map(|r| Parent {
            ordinal: usize::try_from(r.ordinal).unwrap_or(0),
            heading: r.heading.clone(),
            text: r.text.clone(),
            tokens: usize::try_from(r.token_count).unwrap_or(0),
        })
        .collect();
    parents.sort_by_key(|p| p.ordinal);
    let offset = parents.len();
    let mut children: Vec<Child> = rows
        .iter()
        .filter_map(|r| {
            let parent = usize::try_from(r.parent?).ok().filter(|&p| p < offset)?;
            Some(Child {
                ordinal: usize::try_from(r.ordinal).ok()?.checked_sub(offset)?,
                parent,
                text: r.text.clone(),
                tokens: usize::try_from(r.token_count).unwrap_or(0),
            })
        })
        .collect();
    children.sort_by_key(|c| c.ordinal);
    (!children.is_empty()).then_some(Chunks { parents, children })
}

/// The article a stored document was ingested as (its body lives on in its chunks).
fn article_of(document: &Document) -> Article {
    let text = |key: &str| document.metadata.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Article {
        id: document.external_id.clone(),
        title: document.title.clone(),
        category: text("category").unwrap_or_else(|| "general".into()),
        product: text("product"),
        url: document.url.clone(),
        updated: text("updated"),
        body: String::new(),
    }
}

fn summary_of(document: &Document) -> DocumentSummary {
    let text = |key: &str| document.metadata.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    DocumentSummary {
        id: document.external_id.clone(),
        title: document.title.clone(),
        url: document.url.clone(),
        category: text("category"),
        product: text("product"),
        source: text("source"),
        version: document.version,
        updated_at: document.updated_at.to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_retrieval::ChunkingConfig;

    #[test]
    fn chunk_rows_read_back_as_the_same_chunks() {
        let chunks = Chunks {
            parents: vec![
                Parent { ordinal: 0, heading: "Intro".into(), text: "A. B.".into(), tokens: 2 },
                Parent { ordinal: 1, heading: "Steps".into(), text: "C.".into(), tokens: 1 },
            ],
            children: vec![
                Child { ordinal: 0, parent: 0, text: "A.".into(), tokens: 1 },
                Child { ordinal: 1, parent: 0, text: "B.".into(), tokens: 1 },
                Child { ordinal: 2, parent: 1, text: "C.".into(), tokens: 1 },
            ],
        };
        let rows = chunk_rows(DocumentId::new(), &chunks);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[4].heading, "Steps");
        assert_eq!(chunks_of(&rows), Some(chunks));
        assert_eq!(chunks_of(&rows[..2]), None, "parents alone: stored by an older layout");
    }

    #[test]
    fn the_hash_changes_with_content_and_chunking() {
        let article = Article {
            id: "a".into(),
            title: "T".into(),
            category: "c".into(),
            product: None,
            url: None,
            updated: None,
            body: "Body.".into(),
        };
        let config = KnowledgeConfig::default();
        let hash = content_hash(&article, &config);
        assert_eq!(hash, content_hash(&article.clone(), &config));
        let changed = Article { body: "Other.".into(), ..article.clone() };
        assert_ne!(hash, content_hash(&changed, &config));
        let recut = KnowledgeConfig {
            chunking: ChunkingConfig { target_tokens: 100, ..ChunkingConfig::default() },
            ..KnowledgeConfig::default()
        };
        assert_ne!(hash, content_hash(&article, &recut));
    }
}
