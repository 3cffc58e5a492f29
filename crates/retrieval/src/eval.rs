//! Retrieval quality: precision@5, recall@5, MRR and nDCG@10 of a search mode over a set of
//! questions with their relevant documents, and how well "not found" separates the
//! questions the knowledge base cannot answer from those it can.
//!
//! Precision@5 is the standard one: relevant documents in the top five, over five (a
//! question with one relevant document scores at most 0.2). Rankings are of documents: a search's chunks, each document counted at its best chunk.
//! Questions with no relevant document count only towards the not-found figures.

use std::collections::HashSet;
use std::path::Path;

use concierge_core::TenantId;
use serde::{Deserialize, Serialize};

use crate::knowledge::{KnowledgeBase, KnowledgeError, SearchMode, SearchRequest};

/// One question of a retrieval set (`examples/acme/retrieval.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalQuestion {
    pub id: String,
    pub question: String,
    /// Ids of the documents that answer it; empty when none does.
    pub relevant: Vec<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// Reads a JSON-lines question set; a bad line is an error naming its number.
pub fn read_questions(path: &Path) -> Result<Vec<EvalQuestion>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// The figures of one mode over a question set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModeMetrics {
    /// Questions with at least one relevant document.
    pub answerable: usize,
    pub precision_at_5: f64,
    pub recall_at_5: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
    /// Share of unanswerable questions reported as not found.
    pub not_found_recall: f64,
    /// Share of answerable questions wrongly reported as not found.
    pub false_not_found: f64,
    /// Mean search time, embedding included, in ms.
    pub mean_ms: f64,
}

/// Per-question figures: precision@5, recall@5, reciprocal rank, nDCG@10.
pub fn question_metrics(ranked: &[String], relevant: &[String]) -> (f64, f64, f64, f64) {
    let relevant: HashSet<&str> = relevant.iter().map(String::as_str).collect();
    if relevant.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let hit = |doc: &String| relevant.contains(doc.as_str());
    let found_at_5 = ranked.iter().take(5).filter(|d| hit(d)).count() as f64;
    let precision = found_at_5 / 5.0;
    let recall = found_at_5 / relevant.len().min(5) as f64;
    let rr = ranked.iter().position(hit).map_or(0.0, |i| 1.0 / (i + 1) as f64);
    let dcg: f64 =
        ranked.iter().take(10).enumerate().filter(|(_, d)| hit(d)).map(|(i, _)| 1.0 / (i as f64 + 2.0).log2()).sum();
    let ideal: f64 = (0..relevant.len().min(10)).map(|i| 1.0 / (i as f64 + 2.0).log2()).sum();
    (precision, recall, rr, dcg / ideal)
}

/// Document ids in order of their best chunk, each once.
fn ranked_documents(chunks: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    chunks.filter(|id| seen.insert(id.clone())).collect()
}

/// A knowledge base of every document under `folder`, for `tenant`, in memory: what an
/// evaluation searches. `progress(done, total)` after each document.
pub async fn knowledge_base_of_folder(
    folder: &Path,
    tenant: &TenantId,
    embedder: std::sync::Arc<dyn crate::embed::Embedder>,
    chunking: crate::chunk::ChunkingConfig,
    settings: crate::knowledge::SearchSettings,
    progress: &dyn Fn(usize, usize),
) -> Result<KnowledgeBase, KnowledgeError> {
    let articles = crate::ingest::load_folder(folder).map_err(|e| KnowledgeError::Invalid(e.to_string()))?;
    let vectors = crate::vector::VectorIndexConfig::new(embedder.dimension());
    let kb = KnowledgeBase::new(embedder, chunking, settings, vectors)?;
    let total = articles.len();
    for (i, article) in articles.into_iter().enumerate() {
        let document = kb.prepare(article, "eval".into()).await?;
        kb.insert(tenant, document)?;
        progress(i + 1, total);
    }
    Ok(kb)
}

/// Runs every question of `questions` through `kb` in `mode` for `tenant`, reporting
/// progress after each question through `progress(done, total)`.
pub async fn evaluate(
    kb: &KnowledgeBase,
    tenant: &TenantId,
    questions: &[EvalQuestion],
    mode: SearchMode,
    progress: &dyn Fn(usize, usize),
) -> Result<ModeMetrics, KnowledgeError> {
    let mut m = ModeMetrics::default();
    let (mut unanswerable, mut unanswerable_found, mut answerable_missed) = (0, 0, 0);
    let mut total_ms = 0.0;
    for (i, q) in questions.iter().enumerate() {
        let request =
            SearchRequest { mode: Some(mode), limit: Some(10), ..SearchRequest::new(tenant.clone(), &q.question) };
        let results = kb.search(&request).await?;
        total_ms += results.timings.total_ms;
        let ranked = ranked_documents(results.chunks.iter().map(|c| c.document_id.clone()));
        if q.relevant.is_empty() {
            unanswerable += 1;
            unanswerable_found += usize::from(results.not_found);
        } else {
            let (p, r, rr, ndcg) = question_metrics(&ranked, &q.relevant);
            m.answerable += 1;
            m.precision_at_5 += p;
            m.recall_at_5 += r;
            m.mrr += rr;
            m.ndcg_at_10 += ndcg;
            answerable_missed += usize::from(results.not_found);
        }
        progress(i + 1, questions.len());
    }
    let n = m.answerable.max(1) as f64;
    m.precision_at_5 /= n;
    m.recall_at_5 /= n;
    m.mrr /= n;
    m.ndcg_at_10 /= n;
    m.not_found_recall = unanswerable_found as f64 / unanswerable.max(1) as f64;
    m.false_not_found = answerable_missed as f64 / n;
    m.mean_ms = total_ms / questions.len().max(1) as f64;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn metrics_of_known_rankings() {
        let (p, r, rr, ndcg) = question_metrics(&docs(&["a", "b", "c", "d", "e"]), &docs(&["a"]));
        assert_eq!((p, r, rr, ndcg), (0.2, 1.0, 1.0, 1.0), "one relevant document, ranked first");
        let (p, r, rr, ndcg) = question_metrics(&docs(&["x", "a", "c", "d", "e"]), &docs(&["a"]));
        assert_eq!((p, r, rr), (0.2, 1.0, 0.5));
        assert!((ndcg - 1.0 / 3f64.log2()).abs() < 1e-12);
        let (p, r, rr, ndcg) = question_metrics(&docs(&["x", "y", "z", "w", "v", "a"]), &docs(&["a", "b"]));
        assert_eq!((p, r), (0.0, 0.0), "found only at rank 6");
        assert!((rr - 1.0 / 6.0).abs() < 1e-12 && ndcg > 0.0);
        let (p, r, ..) = question_metrics(&docs(&["a", "x", "b"]), &docs(&["a", "b"]));
        assert_eq!((p, r), (0.4, 1.0));
    }

    #[test]
    fn documents_count_once_at_their_best_chunk() {
        let ranked = ranked_documents(docs(&["a", "b", "a", "c", "b"]).into_iter());
        assert_eq!(ranked, docs(&["a", "b", "c"]));
    }

    #[test]
    fn question_files_are_read_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(&path, "{\"id\":\"1\",\"question\":\"q\",\"relevant\":[\"a\"]}\n\nnot json\n").unwrap();
        let err = read_questions(&path).unwrap_err();
        assert!(err.contains("q.jsonl:3: "), "{err}");
        let set =
            read_questions(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/retrieval.jsonl")).unwrap();
        assert!(set.len() >= 80);
    }
}
