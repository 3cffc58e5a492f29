use std::sync::Arc;

use super::*;
use crate::embed::Embedder;

/// Test double for the embedding model: a bag of hashed, lower-cased words, L2-normalised,
/// so texts sharing words are similar and texts sharing none are orthogonal.
struct BagOfWordsEmbedderDouble;

const DIMENSION: usize = 64;

#[async_trait::async_trait]
impl Embedder for BagOfWordsEmbedderDouble {
    fn id(&self) -> &str {
        "test/bag-of-words"
    }

    fn dimension(&self) -> usize {
        DIMENSION
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts
            .iter()
            .map(|text| {
                let mut v = vec![0.0_f32; DIMENSION];
                for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
                    let word = word.to_lowercase();
                    let h = word.bytes().fold(7_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                    v[(h % DIMENSION as u64) as usize] += 1.0;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect())
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::try_from(name.to_owned()).unwrap()
}

fn article(id: &str, title: &str, category: &str, body: &str) -> Article {
    Article {
        id: id.into(),
        title: title.into(),
        category: category.into(),
        product: None,
        url: Some(format!("https://help.example/{id}")),
        updated: None,
        body: body.into(),
    }
}

fn base(settings: SearchSettings) -> KnowledgeBase {
    KnowledgeBase::new(
        Arc::new(BagOfWordsEmbedderDouble),
        ChunkingConfig::default(),
        settings,
        VectorIndexConfig::new(DIMENSION),
    )
    .unwrap()
}

async fn add(kb: &KnowledgeBase, tenant: &TenantId, article: Article) {
    let document = kb.prepare(article, "r1".into()).await.unwrap();
    kb.insert(tenant, document).unwrap();
}

async fn acme() -> (KnowledgeBase, TenantId) {
    let kb = base(SearchSettings { min_similarity: 0.2, ..SearchSettings::default() });
    let acme = tenant("acme");
    add(
        &kb,
        &acme,
        article(
            "refunds",
            "Refund timing",
            "billing",
            "Refunds reach your card within five business days.\n\n## Store credit\n\nStore credit refunds are instant.",
        ),
    )
    .await;
    add(
        &kb,
        &acme,
        article("tracking", "Tracking an order", "shipping", "Your tracking number is in the shipping email."),
    )
    .await;
    (kb, acme)
}

fn ids(results: &SearchResults) -> Vec<&str> {
    results.chunks.iter().map(|c| c.document_id.as_str()).collect()
}

#[tokio::test]
async fn hybrid_search_finds_the_answer_with_every_stage_scored() {
    let (kb, acme) = acme().await;
    let results = kb.search(&SearchRequest::new(acme.clone(), "when do refunds reach my card")).await.unwrap();
    assert_eq!(results.mode, SearchMode::Hybrid);
    assert!(!results.not_found);
    let best = &results.chunks[0];
    assert_eq!((best.document_id.as_str(), best.section.as_str()), ("refunds", "Refund timing"));
    let scores = &best.scores;
    assert_eq!(scores.bm25.map(|s| s.rank), Some(1));
    assert_eq!(scores.vector.map(|s| s.rank), Some(1));
    assert!(scores.fused > 0.0 && scores.similarity.unwrap() > 0.3, "{scores:?}");
    assert_eq!(kb.documents(&acme), ["refunds", "tracking"]);
}

#[tokio::test]
async fn every_mode_and_the_metadata_filter() {
    let (kb, acme) = acme().await;
    let mut request = SearchRequest::new(acme.clone(), "tracking number email");
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        request.mode = Some(mode);
        let results = kb.search(&request).await.unwrap();
        assert_eq!(results.mode, mode);
        assert_eq!(ids(&results)[0], "tracking", "{mode:?}");
        assert_eq!(results.chunks[0].scores.bm25.is_some(), mode != SearchMode::Vector);
        assert_eq!(results.chunks[0].scores.vector.is_some(), mode != SearchMode::Keyword);
    }
    request.filters = vec![("category".into(), "billing".into())];
    let results = kb.search(&request).await.unwrap();
    assert!(results.chunks.iter().all(|c| c.category == "billing"), "{:?}", ids(&results));
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let (kb, acme) = acme().await;
    let other = tenant("other");
    add(&kb, &other, article("secret", "Tracking secrets", "shipping", "Other tracking number email text.")).await;
    let results = kb.search(&SearchRequest::new(acme.clone(), "tracking number email")).await.unwrap();
    assert!(!ids(&results).contains(&"secret"));
    let results = kb.search(&SearchRequest::new(other, "refunds card")).await.unwrap();
    assert_eq!(ids(&results), ["secret"].repeat(results.chunks.len()));
    assert!(results.not_found, "nothing of tenant `other` is about refunds");
}

#[tokio::test]
async fn replacing_and_removing_a_document_updates_every_index_and_the_version() {
    let (kb, acme) = acme().await;
    let before = kb.version(&acme);
    let children = kb.len();
    add(&kb, &acme, article("tracking", "Tracking an order", "shipping", "Parcels can be followed on the map.")).await;
    assert!(kb.version(&acme) > before);
    assert_eq!(kb.len(), children, "one child replaced by one");
    let results = kb.search(&SearchRequest::new(acme.clone(), "tracking number email")).await.unwrap();
    assert!(results.chunks.iter().all(|c| !c.text.contains("shipping email")), "the old text is gone");
    assert!(kb.remove(&acme, "tracking").unwrap());
    assert!(!kb.remove(&acme, "tracking").unwrap());
    let request = SearchRequest { mode: Some(SearchMode::Keyword), ..SearchRequest::new(acme.clone(), "parcels map") };
    assert!(kb.search(&request).await.unwrap().chunks.is_empty());
    assert_eq!(kb.documents(&acme), ["refunds"]);
}

#[tokio::test]
async fn unrelated_questions_are_not_found_and_give_no_context() {
    let (kb, acme) = acme().await;
    let results = kb.search(&SearchRequest::new(acme, "zebra giraffe volcano")).await.unwrap();
    assert!(results.not_found, "{results:?}");
    assert!(kb.context(&results, &ContextConfig::default()).is_empty());
}

#[tokio::test]
async fn context_gives_each_parent_once_most_relevant_last_within_budget() {
    let (kb, acme) = acme().await;
    let results = kb.search(&SearchRequest::new(acme.clone(), "refunds store credit card")).await.unwrap();
    let passages = kb.context(&results, &ContextConfig { max_tokens: 600, max_passages: 5 });
    let parents: Vec<(&str, &str)> = passages.iter().map(|p| (p.article_id.as_str(), p.heading.as_str())).collect();
    let mut unique = parents.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), parents.len(), "{parents:?}");
    let scores: Vec<f32> = passages.iter().map(|p| p.score).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "most relevant last: {scores:?}");
    let one = kb.context(&results, &ContextConfig { max_tokens: 50, max_passages: 5 });
    assert!(!one.is_empty());
    assert!(one.iter().map(|p| crate::chunk::estimate_tokens(&p.text)).sum::<usize>() <= 50, "{one:?}");
    // Each passage says what it counted against the budget: at least its text's estimate.
    for passage in passages.iter().chain(&one) {
        assert!(passage.tokens >= crate::chunk::estimate_tokens(&passage.text), "{passage:?}");
    }
    assert!(passages.iter().map(|p| p.tokens).sum::<usize>() <= 600);
}

#[tokio::test]
async fn a_saved_vector_index_is_reused_under_the_same_keys() {
    let (kb, acme) = acme().await;
    let dir = tempfile::tempdir().unwrap();
    kb.save_vectors(dir.path()).unwrap();
    let vectors = VectorIndex::open(dir.path()).unwrap();
    let reopened = KnowledgeBase::with_vectors(
        Arc::new(BagOfWordsEmbedderDouble),
        ChunkingConfig::default(),
        SearchSettings::default(),
        vectors,
    )
    .unwrap();
    let known = article("tracking", "Tracking an order", "shipping", "Your tracking number is in the shipping email.");
    let chunks = reopened.chunk(&known);
    assert!(!reopened.insert_indexed(&acme, &known, "r2", &chunks).unwrap(), "another revision's vectors");
    assert!(reopened.insert_indexed(&acme, &known, "r1", &chunks).unwrap());
    let mut unknown = chunks.clone();
    unknown.children[0].ordinal = 99;
    assert!(!reopened.insert_indexed(&acme, &known, "r1", &unknown).unwrap(), "a child the saved index lacks");
    assert_eq!(reopened.prune_vectors().unwrap(), 2, "the refunds document was not inserted again");
    let results = reopened.search(&SearchRequest::new(acme, "tracking number")).await.unwrap();
    assert_eq!(ids(&results)[0], "tracking");
}

#[test]
fn chunk_keys_are_stable_and_distinct() {
    let acme = tenant("acme");
    assert_eq!(chunk_key(&acme, "a", "r", 1), chunk_key(&acme, "a", "r", 1));
    assert_ne!(chunk_key(&acme, "a", "r", 1), chunk_key(&acme, "a", "r", 2));
    assert_ne!(chunk_key(&acme, "a", "r", 1), chunk_key(&acme, "a", "s", 1));
    assert_ne!(chunk_key(&acme, "a", "r", 1), chunk_key(&tenant("other"), "a", "r", 1));
    assert_ne!(chunk_key(&acme, "ab", "r", 1), chunk_key(&tenant("acmea"), "b", "r", 1));
}

#[test]
fn wrong_dimensions_and_settings_are_refused() {
    let wrong = KnowledgeBase::new(
        Arc::new(BagOfWordsEmbedderDouble),
        ChunkingConfig::default(),
        SearchSettings::default(),
        VectorIndexConfig::new(DIMENSION + 1),
    );
    assert!(matches!(wrong, Err(KnowledgeError::Invalid(_))));
    let bad = SearchSettings { top_k: 0, ..SearchSettings::default() };
    assert!(bad.validate().unwrap_err().contains("top_k"));
}
