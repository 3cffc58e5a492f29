//! Loading the knowledge base: articles from disk are recorded in the store (skipping the
//! unchanged ones by content hash) and indexed for search.

use std::path::Path;

use concierge_core::{Chunk, Document, DocumentId, TenantId};
use concierge_retrieval::{load_articles, split_sections, Article, KeywordIndex};
use concierge_store::Store;
use sha2::{Digest, Sha256};

/// What loading the knowledge base did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub articles: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub sections: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Article(#[from] concierge_retrieval::ArticleError),
    #[error(transparent)]
    Store(#[from] concierge_store::StoreError),
    #[error(transparent)]
    Search(#[from] concierge_retrieval::SearchError),
}

/// Records every article of `dir` for `tenant` and builds the keyword index over them.
pub async fn load(
    store: &dyn Store,
    tenant: &TenantId,
    dir: &Path,
) -> Result<(KeywordIndex, IngestSummary), KnowledgeError> {
    let articles = load_articles(dir)?;
    let mut summary = IngestSummary { articles: articles.len(), ..Default::default() };
    for article in &articles {
        let hash = content_hash(article);
        let existing = store.document(tenant, &article.id).await?;
        if existing.as_ref().is_some_and(|d| d.content_hash == hash) {
            summary.unchanged += 1;
            continue;
        }
        let document = Document {
            id: existing.as_ref().map_or_else(DocumentId::new, |d| d.id),
            tenant_id: tenant.clone(),
            external_id: article.id.clone(),
            title: article.title.clone(),
            url: article.url.clone(),
            metadata: serde_json::json!({
                "category": article.category,
                "product": article.product,
                "updated": article.updated,
            }),
            content_hash: hash,
            version: existing.as_ref().map_or(1, |d| d.version + 1),
            updated_at: concierge_core::now(),
        };
        let chunks: Vec<Chunk> = split_sections(article)
            .into_iter()
            .map(|s| Chunk {
                document_id: document.id,
                ordinal: s.ordinal as i64,
                parent: None,
                heading: s.heading,
                token_count: s.text.split_whitespace().count() as i64,
                text: s.text,
            })
            .collect();
        store.upsert_document(&document, &chunks).await?;
        if existing.is_some() {
            summary.updated += 1;
        } else {
            summary.added += 1;
        }
    }
    let index = KeywordIndex::build(&articles)?;
    summary.sections = index.len();
    Ok((index, summary))
}

/// A hash of everything that changes what the article says or how it is cited.
fn content_hash(article: &Article) -> String {
    let mut hasher = Sha256::new();
    for part in [&article.id, &article.title, &article.category, &article.body] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for part in [&article.product, &article.url, &article.updated] {
        hasher.update(part.as_deref().unwrap_or("").as_bytes());
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())
}
