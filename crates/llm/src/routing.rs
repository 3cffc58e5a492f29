//! Model routing: each request goes to a small or a large model, chosen by rules from
//! configuration, and the route taken is handed back so the caller can record it.
//!
//! The small model answers most requests cheaply and quickly; the large one is kept for
//! requests where the small one is likely to fail: intents the operator named, long
//! prompts, requests that read as complex, several intents at once, or a message the
//! intent router was unsure about.
//!
//! Invariant: a decision depends only on the rules and the signals, never on time,
//! randomness or earlier requests, so the same request is always routed the same way and
//! a recorded route can be reproduced.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{ChatModel, EventStream, LlmError};
use crate::types::ChatRequest;

/// When a request goes to the large model instead of the small one; sits in config.
///
/// Missing keys take their defaults; unknown keys are refused so that a misspelt rule
/// does not silently stop routing. Check with [`RoutingRules::validate`] at start-up.
///
/// The rules are tried in this order, and the first that matches decides (and is the
/// recorded reason):
///
/// 1. the intent is one of `large_intents`;
/// 2. more than one intent was detected and `multi_intent_to_large` is set;
/// 3. the prompt is longer than `max_small_prompt_chars`;
/// 4. at least `complexity_threshold` distinct `complexity_markers` occur in the message;
/// 5. the intent router's confidence is below `min_confidence`;
///
/// and otherwise the small model answers. The operator's explicit choices come first,
/// then facts about the request's shape, then word heuristics; low confidence comes last
/// because it is the safety net that upgrades a request nothing else sent to the large
/// model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingRules {
    /// Intents always answered by the large model, compared exactly.
    pub large_intents: Vec<String>,
    /// Prompts longer than this many characters go to the large model: a small model's
    /// answers degrade first on long contexts.
    pub max_small_prompt_chars: usize,
    /// Intent-router confidence below this (0 to 1) upgrades to the large model. A request
    /// without a confidence is not upgraded by this rule.
    pub min_confidence: f32,
    /// Words or phrases suggesting a complex request, e.g. `"compare"`, `"step by step"`.
    /// Matched case-insensitively as whole words, ignoring punctuation and spacing.
    pub complexity_markers: Vec<String>,
    /// How many distinct markers must occur for the request to count as complex; at least
    /// 1. One marker alone is weak evidence ("why" is common), hence the default of 2.
    pub complexity_threshold: usize,
    /// Whether a message with more than one detected intent goes to the large model.
    pub multi_intent_to_large: bool,
}

impl Default for RoutingRules {
    /// No large intents, 4000 characters, confidence 0.6, a handful of English markers with
    /// a threshold of 2, and multi-intent messages to the large model.
    fn default() -> Self {
        Self {
            large_intents: Vec::new(),
            max_small_prompt_chars: 4000,
            min_confidence: 0.6,
            complexity_markers: ["compare", "why", "step by step", "and also", "explain", "difference between"]
                .map(String::from)
                .to_vec(),
            complexity_threshold: 2,
            multi_intent_to_large: true,
        }
    }
}

impl RoutingRules {
    /// Checks the rules; the error names the offending key and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!("routing.min_confidence is {}; expected a number from 0 to 1", self.min_confidence));
        }
        if self.max_small_prompt_chars == 0 {
            return Err("routing.max_small_prompt_chars is 0; expected at least 1 (0 would send every request \
                        to the large model)"
                .into());
        }
        if self.complexity_threshold == 0 {
            return Err("routing.complexity_threshold is 0; expected at least 1 (0 would call every request \
                        complex)"
                .into());
        }
        if let Some(blank) = self.large_intents.iter().find(|intent| intent.trim().is_empty()) {
            return Err(format!("routing.large_intents contains {blank:?}; expected intent names"));
        }
        let mut seen: Vec<Vec<String>> = Vec::new();
        for marker in &self.complexity_markers {
            let words = words(marker);
            if words.is_empty() {
                return Err(format!("routing.complexity_markers contains {marker:?}; expected a word or phrase"));
            }
            // A duplicate would be counted twice and lower the threshold in effect.
            if seen.contains(&words) {
                return Err(format!("routing.complexity_markers contains {marker:?} twice"));
            }
            seen.push(words);
        }
        Ok(())
    }

    /// Which model answers a request with these signals, and why; see [`RoutingRules`]
    /// for the order the rules are tried in.
    ///
    /// Cost: the marker rule splits the message into words once and scans them per
    /// marker, so it is linear in the message length times the number of markers.
    pub fn decide(&self, signals: &RouteSignals) -> RouteDecision {
        match self.large_reason(signals) {
            Some(reason) => RouteDecision { size: ModelSize::Large, reason },
            None => RouteDecision { size: ModelSize::Small, reason: RouteReason::Default },
        }
    }

    /// The first rule that sends the request to the large model, if any.
    fn large_reason(&self, signals: &RouteSignals) -> Option<RouteReason> {
        if let Some(intent) = signals.intent.as_ref().filter(|intent| self.large_intents.contains(intent)) {
            return Some(RouteReason::LargeIntent(intent.clone()));
        }
        if self.multi_intent_to_large && signals.intents_detected > 1 {
            return Some(RouteReason::MultiIntent { count: signals.intents_detected });
        }
        if signals.prompt_chars > self.max_small_prompt_chars {
            return Some(RouteReason::LongPrompt { chars: signals.prompt_chars, limit: self.max_small_prompt_chars });
        }
        let markers = self.markers_in(&signals.text);
        if !markers.is_empty() && markers.len() >= self.complexity_threshold {
            return Some(RouteReason::Complex { markers });
        }
        if let Some(confidence) = signals.confidence.filter(|&confidence| confidence < self.min_confidence) {
            return Some(RouteReason::LowConfidence { confidence, min: self.min_confidence });
        }
        None
    }

    /// The configured markers that occur in `text`, each once, in configured order.
    fn markers_in(&self, text: &str) -> Vec<String> {
        let text = words(text);
        self.complexity_markers
            .iter()
            .filter(|marker| {
                let marker = words(marker);
                !marker.is_empty() && text.windows(marker.len()).any(|window| window == marker.as_slice())
            })
            .cloned()
            .collect()
    }
}

/// Lower-cased words of `text`. Comparing word sequences rather than substrings keeps
/// "why" from matching "whyte" and lets "step by step" match "Step-by-step".
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_lowercase).collect()
}

/// What is known about a request when its model is chosen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteSignals {
    /// The intent the intent router settled on, if any.
    pub intent: Option<String>,
    /// How sure the intent router was, from 0 to 1, if it said.
    pub confidence: Option<f32>,
    /// How many intents were detected in the message.
    pub intents_detected: usize,
    /// Length of the whole prompt (instructions, history, context) in characters.
    pub prompt_chars: usize,
    /// The text of the customer's message, searched for complexity markers.
    pub text: String,
}

/// Which of the two models answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSize {
    /// The cheap, fast model: the default.
    Small,
    /// The capable, expensive model.
    Large,
}

/// The rule that decided a route, with the values it compared, so that a recorded route
/// explains itself.
///
/// Serialized with the rule's name under `rule` and its values under `detail`, e.g.
/// `{"rule":"long_prompt","detail":{"chars":5000,"limit":4000}}` or `{"rule":"default"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", content = "detail", rename_all = "snake_case")]
pub enum RouteReason {
    /// No rule sent the request to the large model.
    Default,
    /// The intent is one of the large intents.
    LargeIntent(String),
    /// The prompt had `chars` characters, more than `limit`.
    LongPrompt {
        /// Characters in the prompt.
        chars: usize,
        /// `max_small_prompt_chars`.
        limit: usize,
    },
    /// The intent router's confidence was below `min`.
    LowConfidence {
        /// The router's confidence.
        confidence: f32,
        /// `min_confidence`.
        min: f32,
    },
    /// These complexity markers occurred in the message, at least the threshold's worth.
    Complex {
        /// The markers found, each once, as configured.
        markers: Vec<String>,
    },
    /// `count` intents were detected in one message.
    MultiIntent {
        /// Intents detected.
        count: usize,
    },
}

/// The model a request goes to and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// Which model answers.
    pub size: ModelSize,
    /// Which rule decided.
    pub reason: RouteReason,
}

/// A small and a large model behind validated routing rules.
///
/// Both may be the same model (one provider configured, or routing switched off in
/// effect); routing then still decides and records a route, it just lands on one model.
pub struct ModelRouter {
    small: Arc<dyn ChatModel>,
    large: Arc<dyn ChatModel>,
    rules: RoutingRules,
}

impl std::fmt::Debug for ModelRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRouter")
            .field("small", &self.small.id())
            .field("large", &self.large.id())
            .field("rules", &self.rules)
            .finish()
    }
}

impl ModelRouter {
    /// A router over `small` and `large`; refuses rules that [`RoutingRules::validate`]
    /// refuses, so a router never runs on a bad configuration.
    pub fn new(small: Arc<dyn ChatModel>, large: Arc<dyn ChatModel>, rules: RoutingRules) -> Result<Self, String> {
        rules.validate()?;
        Ok(Self { small, large, rules })
    }

    /// The rules this router decides by.
    pub fn rules(&self) -> &RoutingRules {
        &self.rules
    }

    /// The model for `size`.
    pub fn model(&self, size: ModelSize) -> &Arc<dyn ChatModel> {
        match size {
            ModelSize::Small => &self.small,
            ModelSize::Large => &self.large,
        }
    }

    /// Chooses a model for `signals` and starts its answer to `request`. Returns the
    /// decision and the id of the model that answers, for the caller to record, with the
    /// events. Errors are the chosen model's, unchanged.
    pub async fn stream(
        &self,
        signals: &RouteSignals,
        request: &ChatRequest,
    ) -> Result<(RouteDecision, String, EventStream), LlmError> {
        let decision = self.rules.decide(signals);
        let model = self.model(decision.size);
        tracing::debug!(model = model.id(), size = ?decision.size, reason = ?decision.reason, "routed request");
        let events = model.stream(request).await?;
        Ok((decision, model.id().to_owned(), events))
    }
}
