//! Help-centre articles on disk: Markdown with TOML front matter between `+++` lines.

use std::path::{Path, PathBuf};

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
}

impl Article {
    /// Parses one article file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ArticleError> {
        let rest = text.strip_prefix("+++").ok_or_else(|| ArticleError::NoFrontMatter { path: path.to_owned() })?;
        let (front, body) =
            rest.split_once("\n+++").ok_or_else(|| ArticleError::NoFrontMatter { path: path.to_owned() })?;
        let mut article: Article = toml::from_str(front)
            .map_err(|e| ArticleError::FrontMatter { path: path.to_owned(), message: e.message().to_owned() })?;
        let body = body.trim();
        if body.is_empty() {
            return Err(ArticleError::EmptyBody { path: path.to_owned() });
        }
        article.body = body.to_owned();
        Ok(article)
    }
}

/// Loads every `*.md` file of `dir`, sorted by file name so ids and ordering are stable.
pub fn load_articles(dir: &Path) -> Result<Vec<Article>, ArticleError> {
    let read_err = |source| ArticleError::Read { path: dir.to_owned(), source };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    let mut articles: Vec<Article> = Vec::with_capacity(paths.len());
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|source| ArticleError::Read { path: path.clone(), source })?;
        let article = Article::parse(&path, &text)?;
        if articles.iter().any(|a| a.id == article.id) {
            return Err(ArticleError::DuplicateId { path, id: article.id });
        }
        articles.push(article);
    }
    Ok(articles)
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

    const SAMPLE: &str = "+++\nid = \"returns\"\ntitle = \"Returning an item\"\ncategory = \"returns\"\n+++\n\nIntro text.\n\n## How to return\n\nStep one.\n### Detail\nMore.\n\n## Refunds\n\nFive days.\n";

    #[test]
    fn front_matter_and_sections_are_parsed() {
        let article = Article::parse(Path::new("returns.md"), SAMPLE).unwrap();
        assert_eq!(article.id, "returns");
        assert_eq!(article.product, None);
        let sections = split_sections(&article);
        let headings: Vec<_> = sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(headings, ["Returning an item", "How to return", "Refunds"]);
        assert!(sections[1].text.contains("### Detail\nMore."));
    }

    #[test]
    fn broken_files_name_the_problem() {
        let err = Article::parse(Path::new("x.md"), "no front matter").unwrap_err();
        assert!(err.to_string().contains("x.md: missing front matter"), "{err}");
        let err = Article::parse(Path::new("y.md"), "+++\ntitle = \"t\"\n+++\nbody").unwrap_err();
        assert!(err.to_string().contains("y.md: front matter: missing field `id`"), "{err}");
        let err =
            Article::parse(Path::new("z.md"), "+++\nid=\"a\"\ntitle=\"t\"\ncategory=\"c\"\n+++\n  \n").unwrap_err();
        assert!(matches!(err, ArticleError::EmptyBody { .. }));
    }
}
