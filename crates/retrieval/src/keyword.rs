//! BM25 keyword search over article sections, in memory, through tantivy.

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, TantivyDocument};

use crate::article::{split_sections, Article};

const ANALYZER: &str = "en_support";
/// Tantivy's smallest allowed indexing budget; the knowledge base is small.
const WRITER_MEMORY: usize = 15_000_000;

/// One ranked section.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub article_id: String,
    pub title: String,
    pub heading: String,
    pub url: Option<String>,
    pub text: String,
    /// BM25 score; higher is better, comparable only within one query.
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

#[derive(Clone, Copy)]
struct Fields {
    article_id: Field,
    title: Field,
    heading: Field,
    body: Field,
    url: Field,
}

/// A BM25 index of article sections. Titles weigh twice, headings one and a half times the
/// body, since a customer's words usually name the topic an article is about.
pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    sections: usize,
}

impl KeywordIndex {
    /// Indexes every section of `articles`. Cost: linear in the text, a few ms per hundred
    /// articles.
    pub fn build(articles: &[Article]) -> Result<Self, SearchError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(ANALYZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let fields = Fields {
            article_id: schema.add_text_field("article_id", STRING | STORED),
            title: schema.add_text_field("title", text.clone()),
            heading: schema.add_text_field("heading", text.clone()),
            body: schema.add_text_field("body", text),
            url: schema.add_text_field("url", STORED),
        };
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(ANALYZER, analyzer());
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY)?;
        let mut sections = 0;
        for article in articles {
            for section in split_sections(article) {
                let mut document = doc!(
                    fields.article_id => article.id.as_str(),
                    fields.title => article.title.as_str(),
                    fields.heading => section.heading.as_str(),
                    fields.body => section.text.as_str(),
                );
                if let Some(url) = &article.url {
                    document.add_text(fields.url, url);
                }
                writer.add_document(document)?;
                sections += 1;
            }
        }
        writer.commit()?;
        let reader = index.reader()?;
        Ok(Self { index, reader, fields, sections })
    }

    /// How many sections are indexed.
    pub fn len(&self) -> usize {
        self.sections
    }

    pub fn is_empty(&self) -> bool {
        self.sections == 0
    }

    /// The `limit` best sections for free text typed by a customer. Query syntax characters
    /// in the text are treated as text, never as operators.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>, SearchError> {
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.title, f.heading, f.body]);
        parser.set_field_boost(f.title, 2.0);
        parser.set_field_boost(f.heading, 1.5);
        let (query, _ignored) = parser.parse_query_lenient(&plain_words(text));
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let get = |field| doc.get_first(field).and_then(|v| v.as_str()).map(str::to_owned);
            hits.push(Hit {
                article_id: get(f.article_id).unwrap_or_default(),
                title: get(f.title).unwrap_or_default(),
                heading: get(f.heading).unwrap_or_default(),
                url: get(f.url),
                text: get(f.body).unwrap_or_default(),
                score,
            });
        }
        Ok(hits)
    }
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

    fn article(id: &str, title: &str, body: &str) -> Article {
        Article {
            id: id.into(),
            title: title.into(),
            category: "c".into(),
            product: None,
            url: Some(format!("https://help.example/{id}")),
            updated: None,
            body: body.into(),
        }
    }

    fn index() -> KeywordIndex {
        KeywordIndex::build(&[
            article(
                "tracking",
                "Tracking your order",
                "Find your tracking number.\n\n## Delays\n\nCarriers sometimes run late.",
            ),
            article("password", "Resetting your password", "Use the reset link we email you."),
        ])
        .unwrap()
    }

    #[test]
    fn questions_find_the_section_that_answers_them() {
        let idx = index();
        assert_eq!(idx.len(), 3);
        let hits = idx.search("Where is my order?", 3).unwrap();
        assert_eq!(hits[0].article_id, "tracking");
        let hits = idx.search("I forgot my passwords", 3).unwrap();
        assert_eq!(hits[0].article_id, "password", "stemming matches plural forms");
        assert_eq!(hits[0].url.as_deref(), Some("https://help.example/password"));
    }

    #[test]
    fn query_syntax_in_customer_text_is_harmless() {
        let idx = index();
        for text in ["title:(order", "\"unbalanced", "AND OR NOT", "+-*~^", "", "   "] {
            assert!(idx.search(text, 3).is_ok(), "{text:?}");
        }
        assert!(idx.search("zzzz qqqq", 3).unwrap().is_empty());
    }
}
