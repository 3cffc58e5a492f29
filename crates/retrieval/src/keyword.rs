//! BM25 keyword search over indexed chunks, in memory, through tantivy.
//!
//! Each tenant has an index of its own: a search never sees another tenant's chunks, and
//! BM25's term statistics (how rare a word is) are the tenant's alone, so one company's
//! articles neither shift another's scores nor reveal what words they contain. It also
//! keeps the usual query a plain disjunction of terms, which tantivy answers with block-max
//! WAND (skipping blocks of postings that cannot reach the top k) instead of scoring every
//! chunk that shares a word with the question. A chunk carries its document, so a
//! document is replaced or removed with one delete-by-term; metadata pairs (`category`,
//! `product`, …) are terms a search may require.
//!
//! Invariant: a search never returns another tenant's chunk, nor one whose metadata fails
//! the filter; customer text is never read as query syntax.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::indexer::IndexWriterOptions;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STRING};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

const ANALYZER: &str = "en_support";
/// Tantivy's indexing budget: enough for a few thousand chunks per commit without flushing.
const WRITER_MEMORY: usize = 50_000_000;
/// How much a word found in a chunk's title, heading or body counts: a customer's words
/// usually name the topic an article is about.
const FIELD_BOOSTS: [(FieldName, f32); 3] =
    [(FieldName::Title, 2.0), (FieldName::Heading, 1.5), (FieldName::Body, 1.0)];

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// One chunk as the keyword index sees it.
#[derive(Debug, Clone, Copy)]
pub struct KeywordChunk<'a> {
    pub key: u64,
    pub title: &'a str,
    pub heading: &'a str,
    pub text: &'a str,
    /// Metadata pairs a search may filter on.
    pub metadata: &'a [(&'a str, &'a str)],
}

#[derive(Clone, Copy)]
enum FieldName {
    Title,
    Heading,
    Body,
}

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    document: Field,
    meta: Field,
    title: Field,
    heading: Field,
    body: Field,
}

impl Fields {
    fn text(&self, name: FieldName) -> Field {
        match name {
            FieldName::Title => self.title,
            FieldName::Heading => self.heading,
            FieldName::Body => self.body,
        }
    }
}

/// A document's id and its chunks.
type DocumentChunks<'a> = (&'a str, &'a [KeywordChunk<'a>]);

/// One tenant's chunks.
struct TenantIndex {
    index: Index,
    reader: IndexReader,
    /// Tantivy allows one writer per index at a time.
    writing: Mutex<()>,
    fields: Fields,
}

impl TenantIndex {
    fn new(analyzer: &TextAnalyzer) -> Result<Self, SearchError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            key: schema.add_u64_field("key", FAST),
            document: schema.add_text_field("document", STRING),
            meta: schema.add_text_field("meta", STRING),
            title: schema.add_text_field("title", text.clone()),
            heading: schema.add_text_field("heading", text.clone()),
            body: schema.add_text_field("body", text),
        };
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(ANALYZER, analyzer.clone());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { index, reader, writing: Mutex::new(()), fields })
    }

    /// Replaces each document's chunks in one commit. The writer lives for the commit only
    /// (one indexing and one merging thread), so an idle tenant holds no threads; merges it
    /// started are finished before this returns.
    fn apply(&self, documents: &[DocumentChunks<'_>]) -> Result<(), SearchError> {
        let f = self.fields;
        let _one_writer = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let options = IndexWriterOptions::builder()
            .memory_budget_per_thread(WRITER_MEMORY)
            .num_worker_threads(1)
            .num_merge_threads(1)
            .build();
        let mut writer = self.index.writer_with_options::<TantivyDocument>(options)?;
        for &(document, chunks) in documents {
            writer.delete_term(Term::from_field_text(f.document, document));
            for chunk in chunks {
                let mut doc = doc!(
                    f.key => chunk.key,
                    f.document => document,
                    f.title => chunk.title,
                    f.heading => chunk.heading,
                    f.body => chunk.text,
                );
                for (k, v) in chunk.metadata {
                    doc.add_text(f.meta, meta_term(k, v));
                }
                writer.add_document(doc)?;
            }
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    fn search(
        &self,
        terms: &[String],
        metadata: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<(u64, f32)>, SearchError> {
        let f = self.fields;
        // One flat disjunction of (field, term) clauses, the boost folded into each term's
        // weight: it scores exactly what a per-word, per-field nested query would, and it is
        // the shape block-max WAND applies to.
        let mut words: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len() * FIELD_BOOSTS.len());
        for term in terms {
            for (name, boost) in FIELD_BOOSTS {
                let query = TermQuery::new(Term::from_field_text(f.text(name), term), IndexRecordOption::WithFreqs);
                words.push((Occur::Should, Box::new(BoostQuery::new(Box::new(query), boost))));
            }
        }
        let words = BooleanQuery::new(words);
        let query: Box<dyn Query> = if metadata.is_empty() {
            Box::new(words)
        } else {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(words))];
            for (k, v) in metadata {
                let term = Term::from_field_text(f.meta, &meta_term(k, v));
                clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
            }
            Box::new(BooleanQuery::new(clauses))
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)))?;
        // Keys come from the fast-field column, one per segment: no stored document is read.
        let mut keys: HashMap<u32, Column<u64>> = HashMap::new();
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let column = match keys.entry(address.segment_ord) {
                std::collections::hash_map::Entry::Occupied(column) => column.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(searcher.segment_reader(address.segment_ord).fast_fields().u64("key")?)
                }
            };
            if let Some(key) = column.first(address.doc_id) {
                hits.push((key, score));
            }
        }
        Ok(hits)
    }

    fn len(&self) -> usize {
        self.reader.searcher().num_docs() as usize
    }
}

/// A BM25 index of chunks, one tantivy index per tenant.
pub struct KeywordIndex {
    tenants: RwLock<HashMap<String, Arc<TenantIndex>>>,
    analyzer: TextAnalyzer,
}

impl KeywordIndex {
    /// An empty index.
    pub fn new() -> Result<Self, SearchError> {
        Ok(Self { tenants: RwLock::new(HashMap::new()), analyzer: analyzer() })
    }

    /// Replaces everything indexed for `document` of `tenant` by `chunks` (none: removes the
    /// document), visible to searches when this returns. Cost: one commit, a few ms.
    pub fn replace(&self, tenant: &str, document: &str, chunks: &[KeywordChunk<'_>]) -> Result<(), SearchError> {
        self.apply(&[(tenant, document, chunks)])
    }

    /// [`KeywordIndex::replace`] for many documents: one commit per tenant they belong to.
    pub fn apply(&self, documents: &[(&str, &str, &[KeywordChunk<'_>])]) -> Result<(), SearchError> {
        let mut by_tenant: Vec<(&str, Vec<DocumentChunks<'_>>)> = Vec::new();
        for &(tenant, document, chunks) in documents {
            match by_tenant.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, docs)) => docs.push((document, chunks)),
                None => by_tenant.push((tenant, vec![(document, chunks)])),
            }
        }
        for (tenant, docs) in by_tenant {
            let index = match self.tenant(tenant) {
                Some(index) => index,
                None if docs.iter().all(|(_, chunks)| chunks.is_empty()) => continue,
                None => {
                    let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
                    match tenants.get(tenant) {
                        Some(index) => Arc::clone(index),
                        None => {
                            let index = Arc::new(TenantIndex::new(&self.analyzer)?);
                            tenants.insert(tenant.to_owned(), Arc::clone(&index));
                            index
                        }
                    }
                }
            };
            index.apply(&docs)?;
        }
        Ok(())
    }

    fn tenant(&self, tenant: &str) -> Option<Arc<TenantIndex>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner).get(tenant).cloned()
    }

    /// How many chunks are indexed, every tenant together.
    pub fn len(&self) -> usize {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner).values().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `limit` best chunks of `tenant` for free text typed by a customer, each with its
    /// BM25 score (comparable only within one query), best first, restricted to chunks having
    /// every pair of `metadata`.
    pub fn search(
        &self,
        tenant: &str,
        text: &str,
        metadata: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<(u64, f32)>, SearchError> {
        let Some(index) = self.tenant(tenant) else { return Ok(Vec::new()) };
        let terms = self.terms(text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        index.search(&terms, metadata, limit)
    }

    /// The indexed form of each word of `text` (lower-cased, stemmed, stop words dropped),
    /// in order, repeats kept: a word said twice counts twice, as it would in a parsed query.
    fn terms(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let words = plain_words(text);
        let mut stream = analyzer.token_stream(&words);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(stream.token().text.clone());
        }
        terms
    }
}

fn meta_term(key: &str, value: &str) -> String {
    format!("{key}\u{1f}{value}")
}

fn analyzer() -> TextAnalyzer {
    let builder =
        TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder.filter(stop).filter(Stemmer::new(Language::English)).build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

/// Keeps letters, digits and spaces, so a question such as `"refund (over $100)?"` can never
/// be read as query syntax.
fn plain_words(text: &str) -> String {
    text.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk<'a>(key: u64, title: &'a str, text: &'a str, metadata: &'a [(&'a str, &'a str)]) -> KeywordChunk<'a> {
        KeywordChunk { key, title, heading: title, text, metadata }
    }

    fn index() -> KeywordIndex {
        let idx = KeywordIndex::new().unwrap();
        let shipping = [("category", "shipping")];
        let account = [("category", "account")];
        idx.replace(
            "acme",
            "tracking",
            &[
                chunk(1, "Tracking your order", "Find your tracking number in the email.", &shipping),
                chunk(2, "Tracking your order", "Carriers sometimes run late.", &shipping),
            ],
        )
        .unwrap();
        idx.replace("acme", "password", &[chunk(3, "Resetting your password", "Use the reset link.", &account)])
            .unwrap();
        idx.replace("other", "password", &[chunk(4, "Resetting your password", "Call us.", &account)]).unwrap();
        idx
    }

    #[test]
    fn questions_find_the_chunk_that_answers_them_within_the_tenant() {
        let idx = index();
        assert_eq!(idx.len(), 4);
        let hits = idx.search("acme", "Where is my tracking number?", &[], 3).unwrap();
        assert_eq!(hits[0].0, 1);
        let hits = idx.search("acme", "I forgot my passwords", &[], 3).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [3], "stemming, and never tenant `other`");
        let hits = idx.search("other", "password", &[], 3).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn metadata_filters_and_replacement_and_removal() {
        let idx = index();
        let filter = [("category".to_owned(), "account".to_owned())];
        assert!(idx.search("acme", "tracking order", &filter, 3).unwrap().is_empty());
        idx.replace("acme", "tracking", &[chunk(9, "Tracking", "Tracking numbers arrive by text.", &[])]).unwrap();
        let keys: Vec<u64> = idx.search("acme", "tracking", &[], 5).unwrap().iter().map(|h| h.0).collect();
        assert_eq!(keys, [9], "the old chunks of the document are gone");
        idx.replace("acme", "tracking", &[]).unwrap();
        assert!(idx.search("acme", "tracking", &[], 5).unwrap().is_empty());
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn one_tenants_chunks_do_not_move_anothers_scores() {
        let idx = index();
        let before = idx.search("acme", "reset password", &[], 3).unwrap();
        let many: Vec<String> = (0..50).map(|i| format!("password reset help number {i}")).collect();
        let chunks: Vec<KeywordChunk<'_>> = many.iter().map(|t| chunk(100, "Password", t, &[])).collect();
        idx.replace("other", "flood", &chunks).unwrap();
        let after = idx.search("acme", "reset password", &[], 3).unwrap();
        assert_eq!(before, after, "term statistics are per tenant");
        assert!(idx.search("nobody", "password", &[], 3).unwrap().is_empty());
    }

    #[test]
    fn the_flat_query_scores_what_the_parsed_query_does() {
        use tantivy::query::QueryParser;
        let idx = index();
        let text = "Where is my tracking number for the order order";
        let tenant = idx.tenant("acme").unwrap();
        let f = tenant.fields;
        let mut parser = QueryParser::for_index(&tenant.index, vec![f.title, f.heading, f.body]);
        parser.set_field_boost(f.title, 2.0);
        parser.set_field_boost(f.heading, 1.5);
        let (parsed, _) = parser.parse_query_lenient(&plain_words(text));
        let searcher = tenant.reader.searcher();
        let mut expected: Vec<f32> =
            searcher.search(&parsed, &TopDocs::with_limit(10)).unwrap().into_iter().map(|(s, _)| s).collect();
        let mut got: Vec<f32> = idx.search("acme", text, &[], 10).unwrap().into_iter().map(|(_, s)| s).collect();
        expected.sort_by(f32::total_cmp);
        got.sort_by(f32::total_cmp);
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-4, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn query_syntax_in_customer_text_is_harmless() {
        let idx = index();
        for text in ["title:(order", "\"unbalanced", "AND OR NOT", "+-*~^", "", "   "] {
            assert!(idx.search("acme", text, &[], 3).is_ok(), "{text:?}");
        }
        assert!(idx.search("acme", "zzzz qqqq", &[], 3).unwrap().is_empty());
    }
}
