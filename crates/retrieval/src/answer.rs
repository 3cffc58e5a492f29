//! The extractive answer: quote the best passage and cite where it came from.
//!
//! It is the answer of last resort in the design (when no model can phrase one), and the
//! whole answer until a model is wired in: it never says anything the knowledge base does
//! not say.

use serde::Serialize;

use crate::knowledge::Hit;

/// Where a quoted passage came from; `n` is the number used in the answer's `[n]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    pub n: usize,
    pub article_id: String,
    pub title: String,
    pub section: String,
    pub url: Option<String>,
}

/// An answer built from knowledge-base passages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractiveAnswer {
    pub text: String,
    pub citations: Vec<Citation>,
    /// False when nothing relevant was found; `text` then says so honestly.
    pub grounded: bool,
}

/// Longest quote, in characters; longer sections are cut at a paragraph or sentence end.
const MAX_QUOTE_CHARS: usize = 900;

impl ExtractiveAnswer {
    /// Quotes the best hit and lists up to two more distinct articles as further reading.
    pub fn from_hits(hits: &[Hit]) -> Self {
        let Some(best) = hits.first() else {
            return Self {
                text: "I couldn't find anything about that in our help centre. Could you rephrase it, \
                       or tell me your order number if it is about an order?"
                    .into(),
                citations: Vec::new(),
                grounded: false,
            };
        };
        let mut citations = vec![citation(1, best)];
        for hit in hits.iter().skip(1) {
            if citations.len() == 3 {
                break;
            }
            if citations.iter().all(|c| c.article_id != hit.article_id) {
                citations.push(citation(citations.len() + 1, hit));
            }
        }
        let source = if best.heading == best.title {
            format!("\"{}\"", best.title)
        } else {
            format!("\"{}\" ({})", best.title, best.heading)
        };
        let mut text = format!("From {source}:\n\n{} [1]", quote(&best.text));
        if citations.len() > 1 {
            let more: Vec<String> = citations[1..].iter().map(|c| format!("\"{}\" [{}]", c.title, c.n)).collect();
            text.push_str(&format!("\n\nSee also: {}.", more.join(", ")));
        }
        Self { text, citations, grounded: true }
    }
}

fn citation(n: usize, hit: &Hit) -> Citation {
    Citation {
        n,
        article_id: hit.article_id.clone(),
        title: hit.title.clone(),
        section: hit.heading.clone(),
        url: hit.url.clone(),
    }
}

/// The passage, cut to at most `MAX_QUOTE_CHARS` at the last paragraph or sentence end.
fn quote(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTE_CHARS {
        return text.trim().to_owned();
    }
    let head: String = text.chars().take(MAX_QUOTE_CHARS).collect();
    let cut = head.rfind("\n\n").or_else(|| head.rfind(". ").map(|i| i + 1)).unwrap_or(head.len());
    format!("{} …", head[..cut].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, text: &str) -> Hit {
        Hit {
            article_id: id.into(),
            title: format!("Title {id}"),
            heading: "Section".into(),
            url: None,
            text: text.into(),
            tokens: crate::chunk::estimate_tokens(text),
            score: 1.0,
        }
    }

    #[test]
    fn answer_quotes_best_passage_and_cites_distinct_articles() {
        let answer = ExtractiveAnswer::from_hits(&[hit("a", "First."), hit("a", "Again."), hit("b", "Other.")]);
        assert!(answer.grounded);
        assert!(answer.text.contains("First. [1]"));
        assert!(answer.text.contains("\"Title b\" [2]"));
        let ids: Vec<_> = answer.citations.iter().map(|c| c.article_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn nothing_found_is_said_honestly() {
        let answer = ExtractiveAnswer::from_hits(&[]);
        assert!(!answer.grounded);
        assert!(answer.citations.is_empty());
    }

    #[test]
    fn long_passages_are_cut_at_a_sentence_end() {
        let long = "This is a sentence. ".repeat(100);
        let q = quote(&long);
        assert!(q.chars().count() <= MAX_QUOTE_CHARS + 2);
        assert!(q.ends_with(". …"), "{q}");
    }
}
