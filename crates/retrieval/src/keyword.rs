//! BM25 keyword search over indexed chunks, in memory, through tantivy.
//!
//! Every chunk carries its tenant and its document, so a search is always one tenant's and a
//! document is replaced or removed with one delete-by-term; metadata pairs (`category`,
//! `product`, …) are terms a search may require.
//!
//! Invariant: a search never returns another tenant's chunk, nor one whose metadata fails
//! the filter; customer text is never read as query syntax.

use std::sync::{Mutex, PoisonError};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

const ANALYZER: &str = "en_support";
/// Tantivy's indexing budget: enough for a few thousand chunks per commit without flushing.
const WRITER_MEMORY: usize = 50_000_000;

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
struct Fields {
    key: Field,
    tenant: Field,
    document: Field,
    meta: Field,
    title: Field,
    heading: Field,
    body: Field,
}

/// A BM25 index of chunks. Titles weigh twice, headings one and a half times the body,
/// since a customer's words usually name the topic an article is about.
pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

impl KeywordIndex {
    /// An empty index.
    pub fn new() -> Result<Self, SearchError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            key: schema.add_u64_field("key", INDEXED | STORED | FAST),
            tenant: schema.add_text_field("tenant", STRING),
            document: schema.add_text_field("document", STRING),
            meta: schema.add_text_field("meta", STRING),
            title: schema.add_text_field("title", text.clone()),
            heading: schema.add_text_field("heading", text.clone()),
            body: schema.add_text_field("body", text),
        };
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { index, reader, writer: Mutex::new(writer), fields })
    }

    /// Replaces everything indexed for `document` of `tenant` by `chunks` (none: removes the
    /// document), visible to searches when this returns. Cost: one commit, a few ms.
    pub fn replace(&self, tenant: &str, document: &str, chunks: &[KeywordChunk<'_>]) -> Result<(), SearchError> {
        self.apply(&[(tenant, document, chunks)])
    }

    /// [`KeywordIndex::replace`] for many documents in one commit.
    pub fn apply(&self, documents: &[(&str, &str, &[KeywordChunk<'_>])]) -> Result<(), SearchError> {
        let f = self.fields;
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        for &(tenant, document, chunks) in documents {
            let scoped = document_key(tenant, document);
            writer.delete_term(Term::from_field_text(f.document, &scoped));
            for chunk in chunks {
                let mut doc = doc!(
                    f.key => chunk.key,
                    f.tenant => tenant,
                    f.document => scoped.as_str(),
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
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// How many chunks are indexed, every tenant together.
    pub fn len(&self) -> usize {
        self.reader.searcher().num_docs() as usize
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
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.title, f.heading, f.body]);
        parser.set_field_boost(f.title, 2.0);
        parser.set_field_boost(f.heading, 1.5);
        let (words, _ignored) = parser.parse_query_lenient(&plain_words(text));
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, words),
            (Occur::Must, Box::new(TermQuery::new(Term::from_field_text(f.tenant, tenant), IndexRecordOption::Basic))),
        ];
        for (k, v) in metadata {
            let term = Term::from_field_text(f.meta, &meta_term(k, v));
            clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(key) = doc.get_first(f.key).and_then(|v| v.as_u64()) {
                hits.push((key, score));
            }
        }
        Ok(hits)
    }
}

/// A document's id scoped by its tenant; the unit separator cannot occur in either.
fn document_key(tenant: &str, document: &str) -> String {
    format!("{tenant}\u{1f}{document}")
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
    fn query_syntax_in_customer_text_is_harmless() {
        let idx = index();
        for text in ["title:(order", "\"unbalanced", "AND OR NOT", "+-*~^", "", "   "] {
            assert!(idx.search("acme", text, &[], 3).is_ok(), "{text:?}");
        }
        assert!(idx.search("acme", "zzzz qqqq", &[], 3).unwrap().is_empty());
    }
}
