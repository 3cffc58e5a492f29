//! Routing between a small and a large model, against test-double models that answer
//! with their own id.

use std::sync::Arc;

use concierge_llm::routing::{ModelRouter, ModelSize, RouteDecision, RouteReason, RouteSignals, RoutingRules};
use concierge_llm::{collect, ChatEvent, ChatModel, ChatRequest, EventStream, FinishReason, LlmError};
use serde_json::json;

/// A test double: a model whose whole answer is its own id, so a test can see which
/// model answered.
struct IdEchoingTestDouble {
    id: String,
}

impl IdEchoingTestDouble {
    fn shared(id: &str) -> Arc<dyn ChatModel> {
        Arc::new(Self { id: id.to_owned() })
    }
}

#[async_trait::async_trait]
impl ChatModel for IdEchoingTestDouble {
    fn id(&self) -> &str {
        &self.id
    }

    async fn stream(&self, _request: &ChatRequest) -> Result<EventStream, LlmError> {
        let events = vec![
            Ok(ChatEvent::TextDelta { text: self.id.clone() }),
            Ok(ChatEvent::Finish { reason: FinishReason::Stop }),
        ];
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

fn rules() -> RoutingRules {
    RoutingRules {
        large_intents: vec!["refund_dispute".into()],
        max_small_prompt_chars: 1000,
        min_confidence: 0.6,
        complexity_markers: vec!["compare".into(), "why".into(), "step by step".into(), "and also".into()],
        complexity_threshold: 2,
        multi_intent_to_large: true,
    }
}

/// A plain, confident, single-intent, short request: small unless a test changes it.
fn plain() -> RouteSignals {
    RouteSignals {
        intent: Some("order_status".into()),
        confidence: Some(0.9),
        intents_detected: 1,
        prompt_chars: 200,
        text: "Where is my order?".into(),
    }
}

fn large(reason: RouteReason) -> RouteDecision {
    RouteDecision { size: ModelSize::Large, reason }
}

#[test]
fn a_plain_request_goes_to_the_small_model_by_default() {
    assert_eq!(rules().decide(&plain()), RouteDecision { size: ModelSize::Small, reason: RouteReason::Default });
}

#[test]
fn a_large_intent_goes_to_the_large_model() {
    let signals = RouteSignals { intent: Some("refund_dispute".into()), ..plain() };
    assert_eq!(rules().decide(&signals), large(RouteReason::LargeIntent("refund_dispute".into())));
}

#[test]
fn several_intents_go_to_the_large_model_only_when_configured() {
    let signals = RouteSignals { intents_detected: 2, ..plain() };
    assert_eq!(rules().decide(&signals), large(RouteReason::MultiIntent { count: 2 }));

    let off = RoutingRules { multi_intent_to_large: false, ..rules() };
    assert_eq!(off.decide(&signals).size, ModelSize::Small);
}

#[test]
fn a_prompt_longer_than_the_limit_goes_to_the_large_model() {
    let at_limit = RouteSignals { prompt_chars: 1000, ..plain() };
    assert_eq!(rules().decide(&at_limit).size, ModelSize::Small, "the limit itself is still small");

    let over = RouteSignals { prompt_chars: 1001, ..plain() };
    assert_eq!(rules().decide(&over), large(RouteReason::LongPrompt { chars: 1001, limit: 1000 }));
}

#[test]
fn enough_complexity_markers_go_to_the_large_model() {
    let one = RouteSignals { text: "Why is my order late?".into(), ..plain() };
    assert_eq!(rules().decide(&one).size, ModelSize::Small, "one marker is below the threshold of 2");

    let two = RouteSignals { text: "Why is it late, and also can you compare shipping options?".into(), ..plain() };
    assert_eq!(
        rules().decide(&two),
        large(RouteReason::Complex { markers: vec!["compare".into(), "why".into(), "and also".into()] })
    );
}

#[test]
fn markers_match_case_insensitively_as_whole_words_across_punctuation() {
    let signals = RouteSignals { text: "COMPARE them, Step-by-Step please".into(), ..plain() };
    assert_eq!(
        rules().decide(&signals),
        large(RouteReason::Complex { markers: vec!["compare".into(), "step by step".into()] })
    );

    let inside_other_words = RouteSignals { text: "Mr Whyte comparedly stepped by".into(), ..plain() };
    assert_eq!(rules().decide(&inside_other_words).size, ModelSize::Small);
}

#[test]
fn a_marker_repeated_in_the_message_counts_once() {
    let signals = RouteSignals { text: "Why? Why? Why?".into(), ..plain() };
    assert_eq!(rules().decide(&signals).size, ModelSize::Small);
}

#[test]
fn low_confidence_upgrades_to_the_large_model() {
    let signals = RouteSignals { confidence: Some(0.4), ..plain() };
    assert_eq!(rules().decide(&signals), large(RouteReason::LowConfidence { confidence: 0.4, min: 0.6 }));

    let at_minimum = RouteSignals { confidence: Some(0.6), ..plain() };
    assert_eq!(rules().decide(&at_minimum).size, ModelSize::Small);
}

#[test]
fn a_request_without_a_confidence_is_not_upgraded_for_it() {
    let signals = RouteSignals { confidence: None, ..plain() };
    assert_eq!(rules().decide(&signals).reason, RouteReason::Default);
}

#[test]
fn the_first_matching_rule_in_documented_order_is_the_recorded_reason() {
    let everything = RouteSignals {
        intent: Some("refund_dispute".into()),
        confidence: Some(0.1),
        intents_detected: 3,
        prompt_chars: 5000,
        text: "Why, and also compare".into(),
    };
    assert_eq!(rules().decide(&everything).reason, RouteReason::LargeIntent("refund_dispute".into()));

    let no_large_intent = RouteSignals { intent: Some("order_status".into()), ..everything.clone() };
    assert_eq!(rules().decide(&no_large_intent).reason, RouteReason::MultiIntent { count: 3 });

    let single_intent = RouteSignals { intents_detected: 1, ..no_large_intent };
    assert_eq!(rules().decide(&single_intent).reason, RouteReason::LongPrompt { chars: 5000, limit: 1000 });

    let short = RouteSignals { prompt_chars: 10, ..single_intent };
    assert!(matches!(rules().decide(&short).reason, RouteReason::Complex { .. }));

    let simple = RouteSignals { text: "Where is it?".into(), ..short };
    assert_eq!(rules().decide(&simple).reason, RouteReason::LowConfidence { confidence: 0.1, min: 0.6 });
}

#[test]
fn the_decision_serializes_with_a_stable_shape() {
    let cases = [
        (
            RouteDecision { size: ModelSize::Small, reason: RouteReason::Default },
            json!({"size": "small", "reason": {"rule": "default"}}),
        ),
        (
            large(RouteReason::LargeIntent("refund_dispute".into())),
            json!({"size": "large", "reason": {"rule": "large_intent", "detail": "refund_dispute"}}),
        ),
        (
            large(RouteReason::LongPrompt { chars: 5000, limit: 4000 }),
            json!({"size": "large", "reason": {"rule": "long_prompt", "detail": {"chars": 5000, "limit": 4000}}}),
        ),
        (
            large(RouteReason::LowConfidence { confidence: 0.25, min: 0.5 }),
            json!({"size": "large", "reason": {"rule": "low_confidence", "detail": {"confidence": 0.25, "min": 0.5}}}),
        ),
        (
            large(RouteReason::Complex { markers: vec!["why".into()] }),
            json!({"size": "large", "reason": {"rule": "complex", "detail": {"markers": ["why"]}}}),
        ),
        (
            large(RouteReason::MultiIntent { count: 2 }),
            json!({"size": "large", "reason": {"rule": "multi_intent", "detail": {"count": 2}}}),
        ),
    ];
    for (decision, expected) in cases {
        let recorded = serde_json::to_value(&decision).unwrap();
        assert_eq!(recorded, expected);
        assert_eq!(serde_json::from_value::<RouteDecision>(recorded).unwrap(), decision, "reads back");
    }
}

#[test]
fn invalid_rules_are_refused_naming_the_key() {
    let cases = [
        (RoutingRules { min_confidence: 1.5, ..rules() }, "min_confidence"),
        (RoutingRules { min_confidence: -0.1, ..rules() }, "min_confidence"),
        (RoutingRules { min_confidence: f32::NAN, ..rules() }, "min_confidence"),
        (RoutingRules { complexity_threshold: 0, ..rules() }, "complexity_threshold"),
        (RoutingRules { max_small_prompt_chars: 0, ..rules() }, "max_small_prompt_chars"),
        (RoutingRules { large_intents: vec![" ".into()], ..rules() }, "large_intents"),
        (RoutingRules { complexity_markers: vec!["?!".into()], ..rules() }, "complexity_markers"),
        (RoutingRules { complexity_markers: vec!["Why".into(), "why".into()], ..rules() }, "complexity_markers"),
    ];
    for (bad, key) in cases {
        let error = bad.validate().unwrap_err();
        assert!(error.contains(&format!("routing.{key}")), "{error:?} should name {key}");
    }
    assert_eq!(rules().validate(), Ok(()));
    assert_eq!(RoutingRules::default().validate(), Ok(()));
}

#[test]
fn rules_read_from_toml_take_defaults_for_missing_keys() {
    let partial: RoutingRules = toml::from_str("large_intents = [\"legal\"]\nmin_confidence = 0.75\n").unwrap();
    assert_eq!(
        partial,
        RoutingRules { large_intents: vec!["legal".into()], min_confidence: 0.75, ..RoutingRules::default() }
    );

    let empty: RoutingRules = toml::from_str("").unwrap();
    assert_eq!(empty, RoutingRules::default());

    let written = toml::to_string(&rules()).unwrap();
    assert_eq!(toml::from_str::<RoutingRules>(&written).unwrap(), rules());
}

#[test]
fn unknown_keys_in_toml_are_refused() {
    let error = toml::from_str::<RoutingRules>("min_confidense = 0.5\n").unwrap_err();
    assert!(error.to_string().contains("min_confidense"), "{error}");
}

#[tokio::test]
async fn the_router_answers_with_the_chosen_model_and_reports_the_route() {
    let router =
        ModelRouter::new(IdEchoingTestDouble::shared("small/m"), IdEchoingTestDouble::shared("large/m"), rules())
            .unwrap();

    let (decision, model, events) = router.stream(&plain(), &ChatRequest::default()).await.unwrap();
    assert_eq!((decision.size, model.as_str()), (ModelSize::Small, "small/m"));
    assert_eq!(collect(events).await.unwrap().text, "small/m");

    let unsure = RouteSignals { confidence: Some(0.2), ..plain() };
    let (decision, model, events) = router.stream(&unsure, &ChatRequest::default()).await.unwrap();
    assert_eq!(decision, large(RouteReason::LowConfidence { confidence: 0.2, min: 0.6 }));
    assert_eq!(model, "large/m");
    assert_eq!(collect(events).await.unwrap().text, "large/m");
}

#[tokio::test]
async fn one_model_as_both_small_and_large_still_routes_and_records() {
    let only = IdEchoingTestDouble::shared("only/m");
    let router = ModelRouter::new(only.clone(), only, rules()).unwrap();

    for (signals, size) in
        [(plain(), ModelSize::Small), (RouteSignals { intents_detected: 2, ..plain() }, ModelSize::Large)]
    {
        let (decision, model, events) = router.stream(&signals, &ChatRequest::default()).await.unwrap();
        assert_eq!((decision.size, model.as_str()), (size, "only/m"));
        assert_eq!(collect(events).await.unwrap().text, "only/m");
    }
}

#[test]
fn a_router_is_not_built_on_invalid_rules() {
    let model = IdEchoingTestDouble::shared("m");
    let error =
        ModelRouter::new(model.clone(), model, RoutingRules { complexity_threshold: 0, ..rules() }).unwrap_err();
    assert!(error.contains("routing.complexity_threshold"), "{error}");
}
