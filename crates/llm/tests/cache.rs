//! The byte cache, the exact-match response cache and the semantic cache.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use support::{unavailable, ManualClock, Outcome, ScriptedModel};

use concierge_llm::cache::{Cache, CacheStats, CachedModel, MemoryCache, SemanticCache, EXACT_KEY_PREFIX};
use concierge_llm::{
    ChatEvent, ChatMessage, ChatModel, ChatRequest, ChatResponse, FinishReason, LlmError, ToolCall, Usage,
};

/// A deterministic (temperature 0) request: the only kind the cache keeps.
fn question(text: &str) -> ChatRequest {
    ChatRequest { messages: vec![ChatMessage::user(text)], temperature: Some(0.0), ..ChatRequest::default() }
}

const TTL: Duration = Duration::from_secs(60);

/// A cached model over `inner` with a fresh in-memory cache on `clock`.
fn cached(inner: Arc<ScriptedModel>, clock: &ManualClock) -> (CachedModel, Arc<MemoryCache>) {
    let cache = Arc::new(MemoryCache::with_clock(100, clock.clock()));
    (CachedModel::new(inner, cache.clone(), TTL), cache)
}

// ---- CachedModel ----------------------------------------------------------------------

#[tokio::test]
async fn an_identical_request_is_answered_once_and_then_from_the_cache() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, cache) = cached(inner.clone(), &ManualClock::new());

    let first = model.complete(&question("Where is my order?")).await.unwrap();
    let second = model.complete(&question("Where is my order?")).await.unwrap();

    assert_eq!(inner.calls(), 1);
    assert_eq!(first, second);
    assert_eq!(second.text, "answer #1");
    assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1, entries: 1 });
}

#[tokio::test]
async fn a_hit_replays_text_tool_calls_usage_and_finish_as_events() {
    let call = ToolCall { id: "c1".into(), name: "track_order".into(), arguments: json!({ "order": 42 }) };
    let usage = Usage { prompt_tokens: 10, completion_tokens: 4 };
    let inner = ScriptedModel::numbered(
        "openai/gpt",
        vec![Outcome::Answer(vec![
            Ok(ChatEvent::TextDelta { text: "Let me ".into() }),
            Ok(ChatEvent::TextDelta { text: "check.".into() }),
            Ok(ChatEvent::ToolCall { call: call.clone() }),
            Ok(ChatEvent::Usage { usage }),
            Ok(ChatEvent::Finish { reason: FinishReason::ToolCalls }),
        ])],
    );
    let (model, _) = cached(inner.clone(), &ManualClock::new());
    model.complete(&question("Where is order 42?")).await.unwrap();

    let replayed: Vec<_> = model.stream(&question("Where is order 42?")).await.unwrap().collect().await;

    assert_eq!(inner.calls(), 1);
    let replayed: Vec<_> = replayed.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        replayed,
        vec![
            ChatEvent::TextDelta { text: "Let me check.".into() },
            ChatEvent::ToolCall { call },
            ChatEvent::Usage { usage },
            ChatEvent::Finish { reason: FinishReason::ToolCalls },
        ]
    );
}

#[tokio::test]
async fn different_messages_miss_the_cache() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, _) = cached(inner.clone(), &ManualClock::new());

    let first = model.complete(&question("Where is my order?")).await.unwrap();
    let second = model.complete(&question("Where is my refund?")).await.unwrap();

    assert_eq!(inner.calls(), 2);
    assert_ne!(first, second);
}

#[tokio::test]
async fn an_unset_temperature_is_never_cached_because_providers_then_sample() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, _) = cached(inner.clone(), &ManualClock::new());

    model.complete(&ChatRequest { temperature: None, ..question("Hi") }).await.unwrap();
    model.complete(&ChatRequest { temperature: None, ..question("Hi") }).await.unwrap();

    assert_eq!(inner.calls(), 2);
}

#[tokio::test]
async fn any_other_request_setting_misses_the_cache() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, _) = cached(inner.clone(), &ManualClock::new());
    let variants = [
        question("Hi"),
        ChatRequest { max_tokens: Some(10), ..question("Hi") },
        ChatRequest { stop: vec!["\n".into()], ..question("Hi") },
        ChatRequest { seed: Some(7), ..question("Hi") },
        ChatRequest { json_mode: true, ..question("Hi") },
    ];

    for request in &variants {
        model.complete(request).await.unwrap();
    }

    assert_eq!(inner.calls(), variants.len());
}

#[tokio::test]
async fn the_same_request_to_a_different_model_misses_the_cache() {
    let clock = ManualClock::new();
    let cache = Arc::new(MemoryCache::with_clock(100, clock.clock()));
    let gpt = ScriptedModel::numbered("openai/gpt", Vec::new());
    let claude = ScriptedModel::numbered("anthropic/claude", Vec::new());
    let via_gpt = CachedModel::new(gpt.clone(), cache.clone(), TTL);
    let via_claude = CachedModel::new(claude.clone(), cache, TTL);

    via_gpt.complete(&question("Hi")).await.unwrap();
    via_claude.complete(&question("Hi")).await.unwrap();

    assert_eq!((gpt.calls(), claude.calls()), (1, 1));
    assert_ne!(via_gpt.cache_key(&question("Hi")), via_claude.cache_key(&question("Hi")));
}

#[tokio::test]
async fn a_sampled_request_is_never_cached() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, cache) = cached(inner.clone(), &ManualClock::new());
    let creative = ChatRequest { temperature: Some(0.7), ..question("Write a haiku") };

    let first = model.complete(&creative).await.unwrap();
    let second = model.complete(&creative).await.unwrap();

    assert_eq!(inner.calls(), 2);
    assert_ne!(first, second);
    assert_eq!(model.cache_key(&creative), None);
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn a_failure_to_start_is_not_cached() {
    let inner = ScriptedModel::numbered("openai/gpt", vec![Outcome::Fail(unavailable())]);
    let (model, cache) = cached(inner.clone(), &ManualClock::new());

    assert_eq!(model.complete(&question("Hi")).await.unwrap_err(), unavailable());
    assert_eq!(cache.stats().entries, 0);
    let retried = model.complete(&question("Hi")).await.unwrap();

    assert_eq!(inner.calls(), 2);
    assert_eq!(retried.text, "answer #2");
}

#[tokio::test]
async fn an_answer_that_fails_midway_is_not_cached() {
    let inner = ScriptedModel::numbered(
        "openai/gpt",
        vec![Outcome::Answer(vec![
            Ok(ChatEvent::TextDelta { text: "Half".into() }),
            Ok(ChatEvent::Finish { reason: FinishReason::Stop }),
            Err(unavailable()),
        ])],
    );
    let (model, cache) = cached(inner.clone(), &ManualClock::new());

    let events: Vec<_> = model.stream(&question("Hi")).await.unwrap().collect().await;
    assert_eq!(events.last(), Some(&Err(unavailable())));
    assert_eq!(cache.stats().entries, 0);
    let retried = model.complete(&question("Hi")).await.unwrap();

    assert_eq!(inner.calls(), 2);
    assert_eq!(retried.text, "answer #2");
    assert_eq!(cache.stats().entries, 1);
}

#[tokio::test]
async fn a_truncated_answer_without_finish_is_not_cached() {
    let inner = ScriptedModel::numbered(
        "openai/gpt",
        vec![Outcome::Answer(vec![Ok(ChatEvent::TextDelta { text: "Half an ans".into() })])],
    );
    let (model, cache) = cached(inner.clone(), &ManualClock::new());

    let err = model.complete(&question("Hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Truncated { .. }));
    assert_eq!(cache.stats().entries, 0);
    let retried = model.complete(&question("Hi")).await.unwrap();

    assert_eq!(inner.calls(), 2);
    assert_eq!(retried.text, "answer #2");
}

#[tokio::test]
async fn an_answer_read_only_partly_is_not_cached() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, cache) = cached(inner.clone(), &ManualClock::new());

    let mut events = model.stream(&question("Hi")).await.unwrap();
    events.next().await.unwrap().unwrap();
    drop(events);
    assert_eq!(cache.stats().entries, 0);
    model.complete(&question("Hi")).await.unwrap();

    assert_eq!(inner.calls(), 2);
}

#[tokio::test]
async fn a_cached_answer_expires_after_its_ttl() {
    let clock = ManualClock::new();
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, _) = cached(inner.clone(), &clock);

    model.complete(&question("Hi")).await.unwrap();
    clock.advance(TTL - Duration::from_secs(1));
    model.complete(&question("Hi")).await.unwrap();
    assert_eq!(inner.calls(), 1);

    clock.advance(Duration::from_secs(1));
    let fresh = model.complete(&question("Hi")).await.unwrap();

    assert_eq!(inner.calls(), 2);
    assert_eq!(fresh.text, "answer #2");
}

#[tokio::test]
async fn an_unreadable_or_unfinished_cached_answer_is_a_miss() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, cache) = cached(inner.clone(), &ManualClock::new());
    let key = model.cache_key(&question("Hi")).unwrap();
    let unfinished = serde_json::to_vec(&ChatResponse { text: "half".into(), ..ChatResponse::default() }).unwrap();

    for (calls, bad) in [(1, b"not json".to_vec()), (2, unfinished)] {
        cache.put(&key, bad, TTL).await;
        let response = model.complete(&question("Hi")).await.unwrap();
        assert_eq!(inner.calls(), calls);
        assert_eq!(response.text, format!("answer #{calls}"));
    }
}

#[tokio::test]
async fn answers_live_under_the_exact_prefix_and_can_be_dropped_together() {
    let inner = ScriptedModel::numbered("openai/gpt", Vec::new());
    let (model, cache) = cached(inner.clone(), &ManualClock::new());
    assert!(model.cache_key(&question("Hi")).unwrap().starts_with(EXACT_KEY_PREFIX));
    model.complete(&question("Hi")).await.unwrap();

    cache.delete_prefix(EXACT_KEY_PREFIX).await;
    model.complete(&question("Hi")).await.unwrap();

    assert_eq!(inner.calls(), 2);
}

// ---- MemoryCache ----------------------------------------------------------------------

#[tokio::test]
async fn a_full_memory_cache_evicts_its_oldest_entry() {
    let cache = MemoryCache::with_clock(2, ManualClock::new().clock());
    cache.put("a", b"1".to_vec(), TTL).await;
    cache.put("b", b"2".to_vec(), TTL).await;
    cache.put("c", b"3".to_vec(), TTL).await;

    assert_eq!(cache.get("a").await, None);
    assert_eq!(cache.get("b").await, Some(b"2".to_vec()));
    assert_eq!(cache.get("c").await, Some(b"3".to_vec()));
    assert_eq!(cache.stats(), CacheStats { hits: 2, misses: 1, entries: 2 });
}

#[tokio::test]
async fn a_full_memory_cache_evicts_expired_entries_before_live_ones() {
    let clock = ManualClock::new();
    let cache = MemoryCache::with_clock(2, clock.clock());
    cache.put("old but long-lived", b"1".to_vec(), Duration::from_secs(600)).await;
    cache.put("short-lived", b"2".to_vec(), Duration::from_secs(1)).await;
    clock.advance(Duration::from_secs(2));

    cache.put("new", b"3".to_vec(), TTL).await;

    assert_eq!(cache.get("old but long-lived").await, Some(b"1".to_vec()));
    assert_eq!(cache.get("new").await, Some(b"3".to_vec()));
    assert_eq!(cache.stats().entries, 2);
}

#[tokio::test]
async fn replacing_a_key_in_a_full_memory_cache_evicts_nothing() {
    let cache = MemoryCache::with_clock(2, ManualClock::new().clock());
    cache.put("a", b"1".to_vec(), TTL).await;
    cache.put("b", b"2".to_vec(), TTL).await;
    cache.put("a", b"3".to_vec(), TTL).await;

    assert_eq!(cache.get("a").await, Some(b"3".to_vec()));
    assert_eq!(cache.get("b").await, Some(b"2".to_vec()));
}

#[tokio::test]
async fn a_memory_cache_entry_expires_after_its_ttl() {
    let clock = ManualClock::new();
    let cache = MemoryCache::with_clock(10, clock.clock());
    cache.put("k", b"v".to_vec(), Duration::from_secs(5)).await;
    clock.advance(Duration::from_secs(5));

    assert_eq!(cache.get("k").await, None);
    assert_eq!(cache.stats(), CacheStats { hits: 0, misses: 1, entries: 0 });
}

#[tokio::test]
async fn delete_prefix_removes_only_matching_keys() {
    let cache = MemoryCache::new(10);
    cache.put("llm:exact:1", b"1".to_vec(), TTL).await;
    cache.put("llm:exact:2", b"2".to_vec(), TTL).await;
    cache.put("other:1", b"3".to_vec(), TTL).await;

    cache.delete_prefix("llm:exact:").await;

    assert_eq!(cache.get("llm:exact:1").await, None);
    assert_eq!(cache.get("llm:exact:2").await, None);
    assert_eq!(cache.get("other:1").await, Some(b"3".to_vec()));
}

// ---- SemanticCache --------------------------------------------------------------------

fn semantic(clock: &ManualClock) -> SemanticCache {
    SemanticCache::with_clock(0.95, TTL, 100, clock.clock())
}

#[test]
fn a_near_duplicate_question_gets_the_stored_answer() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![1.0, 0.0, 0.0], "Ships in 2 days".into());

    // Scaled and nudged: cosine ≈ 0.995, and length must not matter.
    let answer = cache.lookup("acme", "v1", &[10.0, 1.0, 0.0]);

    assert_eq!(answer.as_deref(), Some("Ships in 2 days"));
    assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 0, entries: 1 });
}

#[test]
fn a_question_below_the_threshold_misses() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![1.0, 0.0, 0.0], "Ships in 2 days".into());

    // cosine ≈ 0.89
    assert_eq!(cache.lookup("acme", "v1", &[2.0, 1.0, 0.0]), None);
    assert_eq!(cache.stats().misses, 1);
}

#[test]
fn the_most_similar_stored_question_wins() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![1.0, 0.1, 0.0], "close".into());
    cache.insert("acme", "v1", vec![1.0, 0.0, 0.0], "closest".into());
    cache.insert("acme", "v1", vec![1.0, 0.2, 0.0], "further".into());

    assert_eq!(cache.lookup("acme", "v1", &[1.0, 0.0, 0.0]).as_deref(), Some("closest"));
}

#[test]
fn another_tenants_answer_is_never_served() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![1.0, 0.0], "acme's answer".into());

    assert_eq!(cache.lookup("globex", "v1", &[1.0, 0.0]), None);
}

#[test]
fn an_answer_from_another_knowledge_base_version_is_never_served() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![1.0, 0.0], "from the old documents".into());

    assert_eq!(cache.lookup("acme", "v2", &[1.0, 0.0]), None);
}

#[test]
fn an_expired_semantic_answer_misses() {
    let clock = ManualClock::new();
    let cache = semantic(&clock);
    cache.insert("acme", "v1", vec![1.0, 0.0], "stale".into());
    clock.advance(TTL);

    assert_eq!(cache.lookup("acme", "v1", &[1.0, 0.0]), None);
    assert_eq!(cache.stats().entries, 0);
}

#[test]
fn vectors_of_different_dimensions_never_match() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![1.0, 0.0], "two dimensions".into());

    assert_eq!(cache.lookup("acme", "v1", &[1.0, 0.0, 0.0]), None);
}

#[test]
fn a_zero_vector_is_neither_stored_nor_matched() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![0.0, 0.0], "no direction".into());
    cache.insert("acme", "v1", vec![1.0, 0.0], "real".into());

    assert_eq!(cache.lookup("acme", "v1", &[0.0, 0.0]), None);
    assert_eq!(cache.stats().entries, 1);
}

#[test]
fn invalidate_tenant_clears_only_that_tenant() {
    let cache = semantic(&ManualClock::new());
    cache.insert("acme", "v1", vec![1.0, 0.0], "acme".into());
    cache.insert("acme", "v2", vec![0.0, 1.0], "acme v2".into());
    cache.insert("globex", "v1", vec![1.0, 0.0], "globex".into());

    cache.invalidate_tenant("acme");

    assert_eq!(cache.lookup("acme", "v1", &[1.0, 0.0]), None);
    assert_eq!(cache.lookup("acme", "v2", &[0.0, 1.0]), None);
    assert_eq!(cache.lookup("globex", "v1", &[1.0, 0.0]).as_deref(), Some("globex"));
}

#[test]
fn a_full_semantic_cache_evicts_its_oldest_answer() {
    let cache = SemanticCache::with_clock(0.95, TTL, 2, ManualClock::new().clock());
    cache.insert("acme", "v1", vec![1.0, 0.0, 0.0], "first".into());
    cache.insert("acme", "v1", vec![0.0, 1.0, 0.0], "second".into());
    cache.insert("acme", "v1", vec![0.0, 0.0, 1.0], "third".into());

    assert_eq!(cache.lookup("acme", "v1", &[1.0, 0.0, 0.0]), None);
    assert_eq!(cache.lookup("acme", "v1", &[0.0, 1.0, 0.0]).as_deref(), Some("second"));
    assert_eq!(cache.stats().entries, 2);
}
