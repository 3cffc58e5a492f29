//! A search: BM25 and vector candidates, fused, diversified (MMR), optionally reranked, each
//! stage's score kept on every result so an operator can see why a passage ranked where it
//! did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use concierge_core::TenantId;
use serde::{Deserialize, Serialize};

use super::{KnowledgeBase, KnowledgeError};
use crate::fusion::{self, Fusion};
use crate::vector::{dot, VectorFilter};

/// Which indexes a search asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// BM25 only; no query embedding.
    Keyword,
    /// Vectors only.
    Vector,
    /// Both, fused.
    Hybrid,
}

impl SearchMode {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "keyword" | "bm25" => Some(Self::Keyword),
            "vector" => Some(Self::Vector),
            "hybrid" => Some(Self::Hybrid),
            _ => None,
        }
    }
}

/// How a tenant's searches run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    pub mode: SearchMode,
    pub fusion: Fusion,
    /// Candidates taken from each index before fusion.
    pub candidates: usize,
    /// Chunks a search returns.
    pub top_k: usize,
    /// Maximal-marginal-relevance trade-off, 0 (diversity only) to 1 (relevance only);
    /// `None` keeps the fused order.
    pub mmr_lambda: Option<f32>,
    /// Below this cosine similarity between the question and the best chunk found, the
    /// search reports "not found" (hybrid and vector modes).
    pub min_similarity: f32,
    /// Rerank the fused candidates with the cross-encoder, when one is loaded.
    pub rerank: bool,
    /// How many fused candidates the reranker scores.
    pub rerank_candidates: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            mode: SearchMode::Hybrid,
            // Measured on the Acme question set (bench/README.md): weighted 0.85 ranks best,
            // ahead of vectors alone and of reciprocal rank fusion.
            fusion: Fusion::weighted(0.85),
            candidates: 40,
            top_k: 8,
            mmr_lambda: Some(0.8),
            min_similarity: 0.38,
            rerank: false,
            rerank_candidates: 20,
        }
    }
}

impl SearchSettings {
    /// Whether the settings make sense; what is wrong, naming the setting, when not.
    pub fn validate(&self) -> Result<(), String> {
        self.fusion.validate()?;
        if !(1..=1000).contains(&self.candidates) {
            return Err(format!("candidates is {}; expected 1 to 1000", self.candidates));
        }
        if !(1..=100).contains(&self.top_k) {
            return Err(format!("top_k is {}; expected 1 to 100", self.top_k));
        }
        if self.mmr_lambda.is_some_and(|l| !(0.0..=1.0).contains(&l)) {
            return Err(format!("mmr_lambda is {:?}; expected 0.0 to 1.0", self.mmr_lambda));
        }
        if !(-1.0..=1.0).contains(&self.min_similarity) {
            return Err(format!("min_similarity is {}; expected -1.0 to 1.0", self.min_similarity));
        }
        if !(1..=200).contains(&self.rerank_candidates) {
            return Err(format!("rerank_candidates is {}; expected 1 to 200", self.rerank_candidates));
        }
        Ok(())
    }
}

/// A second stage that scores (question, passage) pairs, higher meaning more relevant.
/// CPU-heavy: it is called on a blocking thread.
pub trait Reranker: Send + Sync {
    fn id(&self) -> &str;
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, String>;
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub tenant: TenantId,
    pub text: String,
    /// Metadata every result must have, e.g. `("category", "billing")`.
    pub filters: Vec<(String, String)>,
    /// Overrides the tenant's mode.
    pub mode: Option<SearchMode>,
    /// Overrides the tenant's `top_k`.
    pub limit: Option<usize>,
}

impl SearchRequest {
    pub fn new(tenant: TenantId, text: impl Into<String>) -> Self {
        Self { tenant, text: text.into(), filters: Vec::new(), mode: None, limit: None }
    }
}

/// A rank (from 1) and a score in one stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RankedScore {
    pub rank: usize,
    pub score: f32,
}

/// Each stage's view of one chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageScores {
    /// BM25, when the keyword index found it among its candidates.
    pub bm25: Option<RankedScore>,
    /// Cosine similarity, when the vector index found it among its candidates.
    pub vector: Option<RankedScore>,
    /// After fusion (in a one-index mode, that index's score).
    pub fused: f32,
    /// The cross-encoder's score, when reranking ran.
    pub reranked: Option<f32>,
    /// Cosine similarity of the question and the chunk, found by the vector index or not
    /// (none in keyword mode).
    pub similarity: Option<f32>,
}

/// One ranked chunk with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredChunk {
    #[serde(skip)]
    pub key: u64,
    pub document_id: String,
    pub title: String,
    pub section: String,
    pub url: Option<String>,
    pub category: String,
    /// The chunk's parent section, by position in its document.
    pub parent: usize,
    pub text: String,
    pub scores: StageScores,
}

/// Milliseconds each stage took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimings {
    pub embed_ms: f64,
    pub bm25_ms: f64,
    pub vector_ms: f64,
    pub fusion_ms: f64,
    pub rerank_ms: f64,
    pub total_ms: f64,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    pub mode: SearchMode,
    pub chunks: Vec<ScoredChunk>,
    /// Nothing found is close enough to the question to answer it from: say so rather than
    /// answer from these chunks.
    pub not_found: bool,
    /// The best chunk's cosine similarity to the question.
    pub best_similarity: Option<f32>,
    pub timings: StageTimings,
}

impl KnowledgeBase {
    /// Searches with the tenant's settings, embedding the question when the mode needs it.
    pub async fn search(&self, request: &SearchRequest) -> Result<SearchResults, KnowledgeError> {
        let mode = request.mode.unwrap_or(self.settings(&request.tenant).mode);
        let started = Instant::now();
        let query = match mode {
            SearchMode::Keyword => None,
            SearchMode::Vector | SearchMode::Hybrid => {
                let mut vectors = self.embedder.embed(&[request.text.as_str()]).await?;
                vectors.pop()
            }
        };
        let embed_ms = elapsed_ms(started);
        let mut results = self.search_with_vector(request, query.as_deref()).await?;
        results.timings.embed_ms = embed_ms;
        results.timings.total_ms += embed_ms;
        Ok(results)
    }

    /// [`KnowledgeBase::search`] with the question's vector already computed (`None` in
    /// keyword mode, or to search by keywords only).
    pub async fn search_with_vector(
        &self,
        request: &SearchRequest,
        query: Option<&[f32]>,
    ) -> Result<SearchResults, KnowledgeError> {
        let settings = self.settings(&request.tenant).clone();
        let mode = match (request.mode.unwrap_or(settings.mode), query) {
            (_, None) => SearchMode::Keyword,
            (mode, Some(_)) => mode,
        };
        let limit = request.limit.unwrap_or(settings.top_k).clamp(1, 100);
        let mut timings = StageTimings::default();
        let started = Instant::now();

        let keyword = if mode == SearchMode::Vector {
            Vec::new()
        } else {
            self.keyword.search(request.tenant.as_str(), &request.text, &request.filters, settings.candidates)?
        };
        timings.bm25_ms = elapsed_ms(started);

        let at = Instant::now();
        let vector = match query {
            Some(query) if mode != SearchMode::Keyword => {
                let mut filter = VectorFilter::tenant(request.tenant.clone());
                for (k, v) in &request.filters {
                    filter = filter.with(k, v);
                }
                self.vectors.search(query, settings.candidates, &filter)?
            }
            _ => Vec::new(),
        };
        timings.vector_ms = elapsed_ms(at);

        let at = Instant::now();
        let fused = match mode {
            SearchMode::Keyword => keyword.clone(),
            SearchMode::Vector => vector.clone(),
            SearchMode::Hybrid => fusion::fuse(settings.fusion, &keyword, &vector),
        };
        let rerank = settings.rerank && self.reranker.is_some();
        let pool = if rerank { settings.rerank_candidates.max(limit) } else { limit };
        let mmr_lambda = settings.mmr_lambda.filter(|&lambda| query.is_some() && lambda < 1.0);
        // The vectors MMR compares (the best `candidates` of the fused list, where its picks
        // almost always come from) or, without MMR, those of the chunks kept, for the
        // similarities reported: read in one go, under one lock.
        let wanted = match (query, mmr_lambda) {
            (None, _) => 0,
            (Some(_), Some(_)) => settings.candidates,
            (Some(_), None) => pool,
        };
        let held: HashMap<u64, Vec<f32>> =
            self.vectors.vectors(fused.iter().take(wanted).map(|&(key, _)| key)).into_iter().collect();
        let chosen = match mmr_lambda {
            Some(lambda) => fusion::mmr(&fused, pool, lambda, |a, b| Some(dot(held.get(&a)?, held.get(&b)?))),
            None => fused.iter().take(pool).copied().collect(),
        };
        timings.fusion_ms = elapsed_ms(at);

        let rank_of = |list: &[(u64, f32)]| -> HashMap<u64, RankedScore> {
            list.iter().enumerate().map(|(i, &(key, score))| (key, RankedScore { rank: i + 1, score })).collect()
        };
        let (bm25_ranks, vector_ranks) = (rank_of(&keyword), rank_of(&vector));
        let mut chunks = {
            let catalog = self.read();
            chosen
                .iter()
                .filter_map(|&(key, fused)| {
                    let child = catalog.children.get(&key)?;
                    let document = catalog.documents.get(&(child.tenant.clone(), child.document.clone()))?;
                    let similarity = query.and_then(|q| match held.get(&key) {
                        Some(v) => Some(dot(q, v)),
                        None => self.vectors.vector(key).map(|v| dot(q, &v)),
                    });
                    Some(ScoredChunk {
                        key,
                        document_id: child.document.clone(),
                        title: document.title.clone(),
                        section: child.heading.clone(),
                        url: document.url.clone(),
                        category: document.category.clone(),
                        parent: child.parent,
                        text: child.text.clone(),
                        scores: StageScores {
                            bm25: bm25_ranks.get(&key).copied(),
                            vector: vector_ranks.get(&key).copied(),
                            fused,
                            reranked: None,
                            similarity,
                        },
                    })
                })
                .collect::<Vec<_>>()
        };

        if rerank {
            let at = Instant::now();
            self.rerank(&request.text, &mut chunks).await?;
            timings.rerank_ms = elapsed_ms(at);
        }
        chunks.truncate(limit);

        let best_similarity = chunks.iter().filter_map(|c| c.scores.similarity).reduce(f32::max);
        let not_found = chunks.is_empty() || best_similarity.is_some_and(|best| best < settings.min_similarity);
        timings.total_ms = elapsed_ms(started);
        Ok(SearchResults { mode, chunks, not_found, best_similarity, timings })
    }

    /// Reorders `chunks` by the cross-encoder's scores, recording them.
    async fn rerank(&self, query: &str, chunks: &mut [ScoredChunk]) -> Result<(), KnowledgeError> {
        let Some(reranker) = self.reranker.as_ref().map(Arc::clone) else { return Ok(()) };
        let query = query.to_owned();
        let passages: Vec<String> = chunks.iter().map(|c| format!("{}\n{}", c.title, c.text)).collect();
        let scores = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
            reranker.score(&query, &refs)
        })
        .await
        .map_err(|e| KnowledgeError::Rerank(e.to_string()))?
        .map_err(KnowledgeError::Rerank)?;
        if scores.len() != chunks.len() {
            return Err(KnowledgeError::Rerank(format!("{} scores for {} passages", scores.len(), chunks.len())));
        }
        for (chunk, score) in chunks.iter_mut().zip(scores) {
            chunk.scores.reranked = Some(score);
        }
        chunks.sort_by(|a, b| {
            let score = |c: &ScoredChunk| c.scores.reranked.unwrap_or(f32::NEG_INFINITY);
            score(b).total_cmp(&score(a)).then_with(|| a.key.cmp(&b.key))
        });
        Ok(())
    }
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
