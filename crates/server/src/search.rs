//! `GET /v1/search`: what retrieval finds for a question, stage by stage, and the passages a
//! prompt would be given. The first place to look when an answer is wrong.

use concierge_retrieval::{ScoredChunk, SearchMode, SearchRequest, SearchResults, StageTimings};
use serde::{Deserialize, Serialize};

use crate::conversation::ConversationService;
use crate::error::ApiError;

const MAX_QUERY_CHARS: usize = 2_000;

/// The query string of `GET /v1/search`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The question.
    pub q: String,
    /// `hybrid`, `keyword` (`bm25`) or `vector`; the tenant's setting when left out.
    #[serde(default)]
    pub mode: Option<String>,
    /// How many chunks (1 to 100).
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
}

/// One ranked chunk in the answer.
#[derive(Debug, Serialize)]
pub struct RankedChunk {
    pub rank: usize,
    #[serde(flatten)]
    pub chunk: ScoredChunk,
}

/// A passage as a prompt would number it.
#[derive(Debug, Serialize)]
pub struct ContextPassage {
    pub n: usize,
    pub document_id: String,
    pub title: String,
    pub section: String,
    pub url: Option<String>,
    pub score: f32,
    pub tokens: usize,
}

#[derive(Debug, Serialize)]
pub struct SearchAnswer {
    pub query: String,
    pub mode: SearchMode,
    pub not_found: bool,
    pub best_similarity: Option<f32>,
    pub timings: StageTimings,
    pub results: Vec<RankedChunk>,
    /// The passages given to the model, in prompt order (most relevant last).
    pub context: Vec<ContextPassage>,
}

/// Checks the parameters and runs the search for the service's tenant.
pub async fn run(service: &ConversationService, params: SearchParams) -> Result<SearchAnswer, ApiError> {
    let query = params.q.trim().to_owned();
    if query.is_empty() || query.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::InvalidQuery(format!("q must be 1 to {MAX_QUERY_CHARS} characters")));
    }
    let mode =
        match params.mode.as_deref() {
            None => None,
            Some(name) => Some(SearchMode::parse(name).ok_or_else(|| {
                ApiError::InvalidQuery(format!("mode `{name}` is not one of hybrid, keyword, vector"))
            })?),
        };
    if params.k.is_some_and(|k| !(1..=100).contains(&k)) {
        return Err(ApiError::InvalidQuery("k must be 1 to 100".into()));
    }
    let mut request = SearchRequest::new(service.tenant().clone(), query.clone());
    request.mode = mode;
    request.limit = params.k;
    for (key, value) in [("category", params.category), ("product", params.product)] {
        if let Some(value) = value {
            request.filters.push((key.to_owned(), value));
        }
    }
    let knowledge = service.knowledge();
    let results: SearchResults = knowledge.search(&request).await?;
    let context = knowledge
        .base()
        .context(&results, &knowledge.config().context)
        .into_iter()
        .enumerate()
        .map(|(i, hit)| ContextPassage {
            n: i + 1,
            tokens: hit.tokens,
            document_id: hit.article_id,
            title: hit.title,
            section: hit.heading,
            url: hit.url,
            score: hit.score,
        })
        .collect();
    Ok(SearchAnswer {
        query,
        mode: results.mode,
        not_found: results.not_found,
        best_similarity: results.best_similarity,
        timings: results.timings,
        results: results.chunks.into_iter().enumerate().map(|(i, chunk)| RankedChunk { rank: i + 1, chunk }).collect(),
        context,
    })
}
