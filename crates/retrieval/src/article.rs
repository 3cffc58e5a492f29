//! The one shape every ingested document takes (see `ingest` for the formats read), and its
//! split into `##` sections.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One help-centre article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    /// The company's own id for the article, unique within a knowledge base.
    pub id: String,
    pub title: String,
    pub category: String,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    /// The Markdown body, front matter removed.
    #[serde(skip)]
    pub body: String,
}

/// One section of an article: the text under one `##` heading (or the introduction).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub ordinal: usize,
    /// The section's heading; the article's title for the introduction.
    pub heading: String,
    pub text: String,
}

/// An article that could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArticleError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: missing front matter (the file must start with a `+++` line and close it with another)")]
    NoFrontMatter { path: PathBuf },
    #[error("{path}: front matter: {message}")]
    FrontMatter { path: PathBuf, message: String },
    #[error("{path}: the article body is empty")]
    EmptyBody { path: PathBuf },
    #[error("{path}: id `{id}` is used by another article too")]
    DuplicateId { path: PathBuf, id: String },
    #[error("{path}: not a readable PDF: {message}")]
    Pdf { path: PathBuf, message: String },
}

/// Splits an article body at its `## ` headings. Text before the first heading is the
/// introduction, headed by the article's title. Deeper headings stay inside their section.
pub fn split_sections(article: &Article) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut heading = article.title.clone();
    let mut text = String::new();
    let flush = |heading: &str, text: &mut String, sections: &mut Vec<Section>| {
        let body = text.trim();
        if !body.is_empty() {
            sections.push(Section { ordinal: sections.len(), heading: heading.to_owned(), text: body.to_owned() });
        }
        text.clear();
    };
    for line in article.body.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            flush(&heading, &mut text, &mut sections);
            heading = h.trim().to_owned();
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    flush(&heading, &mut text, &mut sections);
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "Intro text.\n\n## How to return\n\nStep one.\n### Detail\nMore.\n\n## Refunds\n\nFive days.\n";

    #[test]
    fn sections_start_at_level_two_headings_and_keep_deeper_ones() {
        let article = Article {
            id: "returns".into(),
            title: "Returning an item".into(),
            category: "returns".into(),
            product: None,
            url: None,
            updated: None,
            body: SAMPLE.into(),
        };
        let sections = split_sections(&article);
        let headings: Vec<_> = sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(headings, ["Returning an item", "How to return", "Refunds"]);
        assert!(sections[1].text.contains("### Detail\nMore."));
    }
}
