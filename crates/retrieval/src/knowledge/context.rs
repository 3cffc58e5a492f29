//! The context builder: from ranked chunks to the passages a prompt is given.
//!
//! Chunks are matched small; what a model reads is their parent section, once however many
//! of its children matched. Passages are taken best first while they fit the token budget,
//! then laid out with the most relevant last, nearest the question, where small models
//! attend best. Their position in that order is the `[n]` they are cited by.

use serde::{Deserialize, Serialize};

use super::search::SearchResults;
use super::KnowledgeBase;
use crate::chunk::estimate_tokens;

/// A passage for a prompt: a parent section of one document, and what it is cited by.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub article_id: String,
    pub title: String,
    pub heading: String,
    pub url: Option<String>,
    pub text: String,
    /// What the passage counts against the context budget, in estimated tokens.
    pub tokens: usize,
    /// The score of its best chunk (reranked if reranking ran, else fused).
    pub score: f32,
}

/// How much of the knowledge base goes into one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    /// Tokens all passages together may hold. The best passage is always given, cut to
    /// this budget if it alone is longer.
    pub max_tokens: usize,
    /// Passages at most.
    pub max_passages: usize,
}

impl Default for ContextConfig {
    fn default() -> Self {
        // Three sections of a help article fit in 600 tokens, which keeps a 2-core machine's
        // prompt evaluation near a second for the embedded model.
        Self { max_tokens: 600, max_passages: 3 }
    }
}

impl ContextConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(50..=100_000).contains(&self.max_tokens) {
            return Err(format!("max_tokens is {}; expected 50 to 100000", self.max_tokens));
        }
        if !(1..=50).contains(&self.max_passages) {
            return Err(format!("max_passages is {}; expected 1 to 50", self.max_passages));
        }
        Ok(())
    }
}

impl KnowledgeBase {
    /// The passages for a prompt from `results`, in prompt order (most relevant last), each
    /// a parent section; empty when the search found nothing close enough.
    pub fn context(&self, results: &SearchResults, config: &ContextConfig) -> Vec<Hit> {
        if results.not_found {
            return Vec::new();
        }
        let catalog = self.read();
        let mut taken: Vec<(String, usize)> = Vec::new();
        let mut passages: Vec<Hit> = Vec::new();
        let mut tokens = 0;
        for chunk in &results.chunks {
            if passages.len() == config.max_passages {
                break;
            }
            let parent_id = (chunk.document_id.clone(), chunk.parent);
            if taken.contains(&parent_id) {
                continue;
            }
            let Some(child) = catalog.children.get(&chunk.key) else { continue };
            let Some(document) = catalog.documents.get(&(child.tenant.clone(), child.document.clone())) else {
                continue;
            };
            let Some(parent) = document.parents.get(chunk.parent) else { continue };
            let cost = parent.tokens.max(estimate_tokens(&parent.text));
            let (text, cost) = if passages.is_empty() && cost > config.max_tokens {
                let cut = cut_to_tokens(&parent.text, config.max_tokens);
                let cost = estimate_tokens(&cut);
                (cut, cost)
            } else if tokens + cost > config.max_tokens {
                continue;
            } else {
                (parent.text.clone(), cost)
            };
            tokens += cost;
            taken.push(parent_id);
            passages.push(Hit {
                article_id: chunk.document_id.clone(),
                title: document.title.clone(),
                heading: parent.heading.clone(),
                url: document.url.clone(),
                text,
                tokens: cost,
                score: chunk.scores.reranked.unwrap_or(chunk.scores.fused),
            });
        }
        passages.reverse();
        passages
    }
}

/// The sentences of `text` that fit `budget` tokens (at least the first words, when even
/// one sentence is longer).
fn cut_to_tokens(text: &str, budget: usize) -> String {
    let mut out = String::new();
    for span in crate::text::sentence_spans(text) {
        let sentence = &text[span];
        let candidate = if out.is_empty() { sentence.to_owned() } else { format!("{out} {sentence}") };
        if estimate_tokens(&candidate) > budget {
            break;
        }
        out = candidate;
    }
    if out.trim().is_empty() {
        let words = budget * 10 / 13;
        return text.split_whitespace().take(words).collect::<Vec<_>>().join(" ");
    }
    out.trim().to_owned()
}
