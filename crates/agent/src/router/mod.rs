//! The router: which intent a customer message expresses, how sure it is of that, and what
//! to do about it — hand the message to the intent's specialist, ask a clarifying question
//! between the two likeliest intents, say the message is out of scope, or handle two intents
//! the message names in turn.
//!
//! Intents are declared in configuration with example messages; the router embeds them at
//! start-up and fits a calibrated classifier on them (`classifier`). A small chat model
//! never makes this decision (DESIGN.md): the thresholds act on calibrated probabilities. A
//! strong one may read what the classifier is unsure of, when `llm` says so; the support
//! graph asks it (`support::routing`).

pub mod classifier;
pub mod datasets;
pub mod eval;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use concierge_retrieval::embed::{EmbedError, Embedder};
use serde::{Deserialize, Serialize};

pub use classifier::{ClassifierConfig, ClassifierError, IntentClassifier};

/// One intent as declared: who handles it and what customers say when they mean it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntentSpec {
    pub name: String,
    /// The specialist agent that handles it.
    pub specialist: String,
    /// What the intent is, in a sentence; embedded as one more example.
    #[serde(default)]
    pub description: String,
    pub examples: Vec<String>,
}

/// The `[router]` section: the intents file, the thresholds (all on calibrated
/// probabilities) and how the classifier is fitted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// The intents file (`[[intent]]` tables with examples); no router without one.
    pub intents: Option<std::path::PathBuf>,
    /// Below this confidence in its best intent, the message is out of scope.
    pub out_of_scope_below: f32,
    /// Below this cosine similarity to the nearest example of any intent, the message is out
    /// of scope however confident the classifier is (a classifier is confident far from
    /// every example too: it only knows which side of its boundaries a message falls).
    pub out_of_scope_similarity_below: f32,
    /// Below this confidence (and not out of scope), the customer is asked which of the two
    /// likeliest intents they mean.
    pub clarify_below: f32,
    /// A part of the message (a sentence, or a clause after "and also") names a second
    /// intent when its own best intent differs and reaches this confidence.
    pub second_intent_above: f32,
    pub classifier: ClassifierConfig,
    /// When a chat model routes instead (it needs a model configured, and is meant for a
    /// strong remote one).
    pub llm: LlmRouting,
}

/// When the configured chat model chooses the intent instead of the classifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmRouting {
    /// Never: the classifier decides alone.
    #[default]
    Off,
    /// When the classifier is unsure: it would ask a clarifying question, its best intent is
    /// below 0.6, or it finds the message out of scope by confidence only (the message is
    /// near the examples).
    Unsure,
    /// For every message; the classifier's reading is kept alongside, and decides when the
    /// model fails.
    Always,
}

impl Default for RouterConfig {
    /// No intents file; out of scope below 0.25 confidence or 0.4 similarity, clarify below
    /// 0.45, a second intent at 0.6 or more.
    fn default() -> Self {
        Self {
            intents: None,
            out_of_scope_below: 0.25,
            out_of_scope_similarity_below: 0.4,
            clarify_below: 0.45,
            second_intent_above: 0.6,
            classifier: ClassifierConfig::default(),
            llm: LlmRouting::Off,
        }
    }
}

impl RouterConfig {
    /// The two out-of-scope thresholds.
    pub fn scope(&self) -> Scope {
        Scope { confidence_below: self.out_of_scope_below, similarity_below: self.out_of_scope_similarity_below }
    }

    /// Thresholds that contradict each other are refused.
    pub fn check(&self) -> Result<(), RouterError> {
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        let thresholds =
            [self.out_of_scope_below, self.out_of_scope_similarity_below, self.clarify_below, self.second_intent_above];
        if !thresholds.into_iter().all(unit) {
            return Err(RouterError::Config("every threshold must be between 0 and 1".into()));
        }
        self.classifier.check()?;
        if self.clarify_below < self.out_of_scope_below {
            return Err(RouterError::Config(format!(
                "clarify_below ({}) must not be below out_of_scope_below ({})",
                self.clarify_below, self.out_of_scope_below
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("router: {0}")]
    Config(String),
    #[error("router: {0}")]
    Classifier(#[from] ClassifierError),
    #[error("router: embedding: {0}")]
    Embed(#[from] EmbedError),
}

/// When a message is out of scope: its best intent's confidence or its similarity to the
/// nearest example below these.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scope {
    pub confidence_below: f32,
    pub similarity_below: f32,
}

impl Scope {
    pub fn is_out(&self, prediction: &Prediction) -> bool {
        prediction.best.confidence < self.confidence_below || prediction.similarity < self.similarity_below
    }
}

/// An intent and the calibrated confidence in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub intent: String,
    pub confidence: f32,
}

/// What the classifier says of one text: its two likeliest intents, and how close the text
/// is to the nearest example the router was fitted on (cosine similarity).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub best: Scored,
    pub runner_up: Scored,
    pub similarity: f32,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Routing {
    /// One intent, confidently: hand the message to `specialist`.
    Intent { intent: Scored, specialist: String },
    /// Two intents named in different parts of the message, in the order the message gives
    /// them, each with the part that names it.
    Several { intents: Vec<(Scored, String)> },
    /// Between `candidates`: ask the customer which they mean.
    Clarify { candidates: [Scored; 2] },
    /// Nothing the company handles; `nearest` is the likeliest intent all the same, and
    /// `similarity` how close the message came to any example.
    OutOfScope { nearest: Scored, similarity: f32 },
}

/// The fitted router: the embedder, the classifier, and each intent's specialist.
pub struct Router {
    embedder: Arc<dyn Embedder>,
    classifier: IntentClassifier,
    /// Every example's unit vector, one row each, for the similarity to the nearest.
    examples: ndarray::Array2<f32>,
    specialists: BTreeMap<String, String>,
    config: RouterConfig,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("embedder", &self.embedder.id())
            .field("intents", &self.classifier.labels())
            .field("temperature", &self.classifier.temperature())
            .finish()
    }
}

impl Router {
    /// Embeds every intent's examples (and description) and fits the classifier on them.
    /// `progress(done, total)` is called after each batch embedded.
    pub async fn train(
        embedder: Arc<dyn Embedder>,
        intents: &[IntentSpec],
        config: RouterConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self, RouterError> {
        config.check()?;
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = intents.iter().find(|i| !seen.insert(i.name.as_str())) {
            return Err(RouterError::Config(format!("intent {:?} is declared twice", twice.name)));
        }
        let mut texts = Vec::new();
        let mut targets = Vec::new();
        for (k, intent) in intents.iter().enumerate() {
            let description = Some(intent.description.as_str()).filter(|d| !d.trim().is_empty());
            for text in intent.examples.iter().map(String::as_str).chain(description) {
                if !text.trim().is_empty() {
                    texts.push(text);
                    targets.push(k);
                }
            }
        }
        let vectors = embed_all(embedder.as_ref(), &texts, progress).await?;
        let labels = intents.iter().map(|i| i.name.clone()).collect();
        let classifier = IntentClassifier::fit(labels, &vectors, &targets, &config.classifier)?;
        if classifier.dimensions() != embedder.dimension() {
            return Err(RouterError::Config(format!(
                "the embedder gave {} dimensions where it promised {}",
                classifier.dimensions(),
                embedder.dimension()
            )));
        }
        let specialists = intents.iter().map(|i| (i.name.clone(), i.specialist.clone())).collect();
        let dimensions = classifier.dimensions();
        let examples = ndarray::Array2::from_shape_vec((vectors.len(), dimensions), vectors.concat())
            .map_err(|e| RouterError::Config(format!("example vectors: {e}")))?;
        tracing::info!(
            intents = intents.len(),
            examples = texts.len(),
            temperature = classifier.temperature(),
            "router trained"
        );
        Ok(Self { embedder, classifier, examples, specialists, config })
    }

    /// The configuration it was fitted with.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The classifier's calibration temperature.
    pub fn temperature(&self) -> f32 {
        self.classifier.temperature()
    }

    /// Routes one message: its whole text and each of its parts are embedded in one call.
    pub async fn route(&self, message: &str) -> Result<Routing, RouterError> {
        let parts = message_parts(message);
        let mut texts = vec![message];
        if parts.len() > 1 {
            texts.extend(parts.iter().map(|r| &message[r.clone()]));
        }
        let vectors = self.embedder.embed(&texts).await?;
        let predictions: Vec<Prediction> = vectors.iter().map(|v| self.predict(v)).collect();
        let parts: Vec<(&str, &Prediction)> =
            parts.iter().map(|r| &message[r.clone()]).zip(predictions.iter().skip(1)).collect();
        Ok(self.decide(&predictions[0], &parts))
    }

    /// The two likeliest intents of each text, embedded in batches; for evaluations.
    pub async fn predict_all(
        &self,
        texts: &[&str],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<Prediction>, RouterError> {
        let vectors = embed_all(self.embedder.as_ref(), texts, progress).await?;
        Ok(vectors.iter().map(|v| self.predict(v)).collect())
    }

    /// The two likeliest intents for a message's vector, and its similarity to the nearest
    /// example (one matrix-vector product over every example).
    pub fn predict(&self, vector: &[f32]) -> Prediction {
        let query = ndarray::ArrayView1::from(vector);
        let similarity = self.examples.dot(&query).iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let probabilities = self.classifier.probabilities(vector);
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        let scored = |k: usize| Scored { intent: self.classifier.labels()[k].clone(), confidence: probabilities[k] };
        Prediction { best: scored(order[0]), runner_up: scored(order[1]), similarity }
    }

    /// The decision for a message whose whole text is predicted as `whole` and whose parts
    /// (when it has more than one) as `parts`.
    pub fn decide(&self, whole: &Prediction, parts: &[(&str, &Prediction)]) -> Routing {
        // A part names an intent only when it is sure and in scope itself: "My email is
        // x@example.com" is information, not a second request.
        let scope = self.config.scope();
        let confident: Vec<(&str, &Scored)> = parts
            .iter()
            .filter(|(_, p)| p.best.confidence >= self.config.second_intent_above && !scope.is_out(p))
            .map(|(text, p)| (*text, &p.best))
            .collect();
        let mut several: Vec<(Scored, String)> = Vec::new();
        for (text, scored) in confident {
            if !several.iter().any(|(s, _)| s.intent == scored.intent) {
                several.push((scored.clone(), text.to_owned()));
            }
        }
        if several.len() > 1 {
            several.truncate(2);
            return Routing::Several { intents: several };
        }
        let best = &whole.best;
        if self.config.scope().is_out(whole) {
            return Routing::OutOfScope { nearest: best.clone(), similarity: whole.similarity };
        }
        if best.confidence < self.config.clarify_below {
            return Routing::Clarify { candidates: [best.clone(), whole.runner_up.clone()] };
        }
        let specialist = self.specialists.get(&best.intent).cloned().unwrap_or_default();
        Routing::Intent { intent: best.clone(), specialist }
    }
}

/// Embeds `texts` in batches of 64, reporting progress after each.
async fn embed_all(
    embedder: &dyn Embedder,
    texts: &[&str],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(64) {
        vectors.extend(embedder.embed(batch).await?);
        progress(vectors.len(), texts.len());
    }
    Ok(vectors)
}

/// Words that join two requests in one sentence ("… and also …", "…; also …"). A sentence
/// end ("…. Also …") is a cut already.
const JOINERS: [&str; 4] = [" and also ", "; also ", " and then ", " plus "];

/// The parts of a message that may each carry an intent: its sentences, each cut again at
/// the joiners above; parts of fewer than three words are merged into the one before.
fn message_parts(message: &str) -> Vec<Range<usize>> {
    // ASCII lower-casing keeps every byte offset, so ranges found in it hold in `message`.
    let lower = message.to_ascii_lowercase();
    let mut parts: Vec<Range<usize>> = Vec::new();
    for sentence in concierge_retrieval::sentence_spans(message) {
        let mut cuts: Vec<(usize, usize)> = JOINERS
            .iter()
            .flat_map(|joiner| {
                lower[sentence.clone()].match_indices(joiner).map(|(at, j)| (sentence.start + at, j.len()))
            })
            .collect();
        cuts.sort_unstable();
        let mut start = sentence.start;
        for (at, len) in cuts {
            if at >= start {
                push_part(message, start..at, &mut parts);
                start = at + len;
            }
        }
        push_part(message, start..sentence.end, &mut parts);
    }
    parts
}

fn push_part(message: &str, range: Range<usize>, parts: &mut Vec<Range<usize>>) {
    let range = concierge_retrieval::trim_span(message, range);
    let words = message[range.clone()].split_whitespace().count();
    match parts.last_mut() {
        _ if words == 0 => {}
        Some(last) if words < 3 => last.end = range.end,
        _ => parts.push(range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(message: &str) -> Vec<&str> {
        message_parts(message).into_iter().map(|r| &message[r]).collect()
    }

    #[test]
    fn a_message_is_cut_at_sentences_and_joiners_and_short_bits_stay_with_the_part_before() {
        assert_eq!(parts("Where is my order?"), ["Where is my order?"]);
        assert_eq!(
            parts("Where is my order A-10042? And also how do I reset my password"),
            ["Where is my order A-10042?", "And also how do I reset my password"]
        );
        assert_eq!(
            parts("cancel my order and also change my email address please"),
            ["cancel my order", "change my email address please"]
        );
        assert_eq!(parts("Hi. Thanks!"), ["Hi. Thanks!"]);
        assert_eq!(parts("Héllo and also what"), ["Héllo and also what"]);
    }

    fn scored(intent: &str, confidence: f32) -> Scored {
        Scored { intent: intent.into(), confidence }
    }

    fn prediction(best: (&str, f32), runner_up: (&str, f32)) -> Prediction {
        Prediction { best: scored(best.0, best.1), runner_up: scored(runner_up.0, runner_up.1), similarity: 0.8 }
    }

    /// A router whose classifier is fitted on three one-hot clusters; `decide` is what is
    /// tested, the classifier only has to exist.
    fn router() -> Router {
        let vectors: Vec<Vec<f32>> =
            (0..9).map(|i| (0..3).map(|d| f32::from(u8::from(i % 3 == d))).collect()).collect();
        let targets: Vec<usize> = (0..9).map(|i| i % 3).collect();
        let labels = ["order_status", "password_reset", "refund_request"].map(String::from).to_vec();
        let classifier = IntentClassifier::fit(labels, &vectors, &targets, &ClassifierConfig::default()).unwrap();
        let specialists = [("order_status", "orders"), ("password_reset", "account"), ("refund_request", "billing")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .into_iter()
            .collect();
        let examples = ndarray::Array2::from_shape_vec((9, 3), vectors.concat()).unwrap();
        Router { embedder: Arc::new(NoEmbedder), classifier, examples, specialists, config: RouterConfig::default() }
    }

    /// A test double: the decision tests never embed.
    struct NoEmbedder;

    #[async_trait::async_trait]
    impl Embedder for NoEmbedder {
        fn id(&self) -> &str {
            "test/none"
        }
        fn dimension(&self) -> usize {
            3
        }
        async fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Err(EmbedError::Config("the decision tests never embed".into()))
        }
    }

    #[test]
    fn confidence_decides_between_routing_clarifying_and_out_of_scope() {
        let router = router();
        let decide = |p: Prediction| router.decide(&p, &[]);
        assert_eq!(
            decide(prediction(("order_status", 0.9), ("refund_request", 0.05))),
            Routing::Intent { intent: scored("order_status", 0.9), specialist: "orders".into() }
        );
        assert_eq!(
            decide(prediction(("order_status", 0.4), ("refund_request", 0.35))),
            Routing::Clarify { candidates: [scored("order_status", 0.4), scored("refund_request", 0.35)] }
        );
        assert_eq!(
            decide(prediction(("order_status", 0.2), ("refund_request", 0.1))),
            Routing::OutOfScope { nearest: scored("order_status", 0.2), similarity: 0.8 }
        );
        // Confident, but far from every example.
        let far = Prediction { similarity: 0.3, ..prediction(("order_status", 0.95), ("refund_request", 0.01)) };
        assert_eq!(
            router.decide(&far, &[]),
            Routing::OutOfScope { nearest: scored("order_status", 0.95), similarity: 0.3 }
        );
    }

    #[test]
    fn two_parts_confidently_naming_different_intents_are_handled_in_turn() {
        let router = router();
        let whole = prediction(("order_status", 0.5), ("password_reset", 0.4));
        let first = prediction(("order_status", 0.9), ("refund_request", 0.05));
        let second = prediction(("password_reset", 0.8), ("order_status", 0.1));
        let routing = router.decide(&whole, &[("where is my order", &first), ("reset my password", &second)]);
        assert_eq!(
            routing,
            Routing::Several {
                intents: vec![
                    (scored("order_status", 0.9), "where is my order".into()),
                    (scored("password_reset", 0.8), "reset my password".into())
                ]
            }
        );
        // The same intent twice, or a timid second part, is one intent.
        let again = prediction(("order_status", 0.7), ("refund_request", 0.2));
        let timid = prediction(("password_reset", 0.3), ("order_status", 0.2));
        for other in [&again, &timid] {
            let routing = router.decide(&first, &[("a b c", &first), ("d e f", other)]);
            assert!(matches!(routing, Routing::Intent { .. }), "{routing:?}");
        }
    }

    #[test]
    fn contradictory_thresholds_are_refused() {
        let config = RouterConfig { out_of_scope_below: 0.6, clarify_below: 0.5, ..RouterConfig::default() };
        assert!(config.check().unwrap_err().to_string().contains("clarify_below"));
        let config = RouterConfig { second_intent_above: 1.5, ..RouterConfig::default() };
        assert!(config.check().is_err());
        let mut config = RouterConfig::default();
        config.classifier.max_iterations = 0;
        assert!(config.check().unwrap_err().to_string().contains("max_iterations"));
    }
}
