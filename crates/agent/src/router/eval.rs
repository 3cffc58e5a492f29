//! How well the router routes: accuracy, CLINC150's in-scope accuracy and out-of-scope
//! recall at a threshold, and how well its confidence is calibrated (expected calibration
//! error over ten equal-width bins, and the bins themselves for a reliability plot).

use std::sync::Arc;

use concierge_retrieval::embed::Embedder;
use serde::Serialize;

use super::datasets::{self, LabelledText};
use super::{IntentSpec, Prediction, Router, RouterConfig, RouterError, Scope};

/// Figures for one evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingMetrics {
    pub examples: usize,
    pub out_of_scope_examples: usize,
    /// In-scope examples whose likeliest intent is right, whatever its confidence.
    pub accuracy: f64,
    /// When a message counts as out of scope.
    pub scope: Scope,
    /// In-scope examples routed to the right intent and not called out of scope.
    pub in_scope_accuracy: f64,
    /// Out-of-scope examples called out of scope; `None` when the set has none.
    pub out_of_scope_recall: Option<f64>,
    /// Of the in-scope examples, the share wrongly called out of scope.
    pub false_out_of_scope: f64,
    /// Mean |confidence − accuracy| over the bins, weighted by their size (in-scope examples).
    pub calibration_error: f64,
    pub reliability: Vec<ReliabilityBin>,
}

/// In-scope predictions whose confidence falls in `[low, low + 0.1)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub low: f32,
    pub count: usize,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// What `cross_validate` found.
#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    pub metrics: RoutingMetrics,
    /// The routers' mean calibration temperature.
    pub temperature: f32,
    /// Examples each router was fitted on, on average.
    pub train_examples: usize,
    /// Every prediction and its truth, to score again at other thresholds.
    #[serde(skip)]
    pub predictions: Vec<(Prediction, LabelledText)>,
}

/// `folds`-fold cross-validation of a router on `intents`: each example is predicted by a
/// router fitted without it, and each of `out_of_scope` by one of the routers, scored with
/// `config`'s out-of-scope threshold. `progress(fold, done, total)` follows the embedding.
pub async fn cross_validate(
    embedder: &Arc<dyn Embedder>,
    intents: &[IntentSpec],
    out_of_scope: &[LabelledText],
    config: &RouterConfig,
    folds: usize,
    progress: &(dyn Fn(usize, usize, usize) + Sync),
) -> Result<CrossValidation, RouterError> {
    let folds = folds.max(2);
    let (mut predictions, mut truth, mut temperature) = (Vec::new(), Vec::new(), 0.0);
    for (fold, (train, test)) in datasets::cross_validation(intents, folds).into_iter().enumerate() {
        let router = Router::train(Arc::clone(embedder), &train, config.clone(), &|d, t| progress(fold, d, t)).await?;
        temperature += router.temperature() / folds as f32;
        let test: Vec<LabelledText> =
            test.into_iter().chain(out_of_scope.iter().skip(fold).step_by(folds).cloned()).collect();
        let texts: Vec<&str> = test.iter().map(|t| t.text.as_str()).collect();
        predictions.extend(router.predict_all(&texts, &|d, t| progress(fold, d, t)).await?);
        truth.extend(test);
    }
    let examples: usize = intents.iter().map(|i| i.examples.len()).sum();
    Ok(CrossValidation {
        metrics: score(&predictions, &truth, config.scope()),
        temperature,
        train_examples: examples - examples / folds,
        predictions: predictions.into_iter().zip(truth).collect(),
    })
}

/// Scores `predictions` against `truth` (the same order) with `scope`'s thresholds.
pub fn score(predictions: &[Prediction], truth: &[LabelledText], scope: Scope) -> RoutingMetrics {
    let pairs: Vec<(&Prediction, &LabelledText)> = predictions.iter().zip(truth).collect();
    let in_scope: Vec<(&Prediction, &str)> =
        pairs.iter().filter_map(|(p, t)| t.intent.as_deref().map(|i| (*p, i))).collect();
    let out_of_scope: Vec<&Prediction> = pairs.iter().filter(|(_, t)| t.intent.is_none()).map(|(p, _)| *p).collect();
    let share = |count: usize, of: usize| if of == 0 { 0.0 } else { count as f64 / of as f64 };
    let right = |(p, intent): &&(&Prediction, &str)| p.best.intent == *intent;
    let kept = |p: &Prediction| !scope.is_out(p);
    let reliability = reliability(&in_scope);
    let calibration_error =
        reliability.iter().map(|b| (b.mean_confidence - b.accuracy).abs() * b.count as f64).sum::<f64>()
            / in_scope.len().max(1) as f64;
    RoutingMetrics {
        examples: truth.len(),
        out_of_scope_examples: out_of_scope.len(),
        accuracy: share(in_scope.iter().filter(right).count(), in_scope.len()),
        scope,
        in_scope_accuracy: share(in_scope.iter().filter(|pair| right(pair) && kept(pair.0)).count(), in_scope.len()),
        out_of_scope_recall: (!out_of_scope.is_empty())
            .then(|| share(out_of_scope.iter().filter(|p| !kept(p)).count(), out_of_scope.len())),
        false_out_of_scope: share(in_scope.iter().filter(|(p, _)| !kept(p)).count(), in_scope.len()),
        calibration_error,
        reliability,
    }
}

fn reliability(in_scope: &[(&Prediction, &str)]) -> Vec<ReliabilityBin> {
    // (count, confidence sum, right) per bin; a confidence of 1.0 belongs to the last bin.
    let mut bins = [(0usize, 0f64, 0usize); 10];
    for (p, intent) in in_scope {
        let bin = ((p.best.confidence * 10.0).floor().max(0.0) as usize).min(9);
        bins[bin].0 += 1;
        bins[bin].1 += f64::from(p.best.confidence);
        bins[bin].2 += usize::from(p.best.intent == *intent);
    }
    bins.iter()
        .enumerate()
        .filter(|(_, (count, _, _))| *count > 0)
        .map(|(bin, &(count, sum, right))| ReliabilityBin {
            low: bin as f32 / 10.0,
            count,
            mean_confidence: sum / count as f64,
            accuracy: right as f64 / count as f64,
        })
        .collect()
}

/// The out-of-scope thresholds, on a grid (confidence by 0.05, similarity by 0.02), that
/// maximise in-scope accuracy plus out-of-scope recall on `validation`, which must hold
/// out-of-scope examples; otherwise `fallback` is returned.
pub fn choose_scope(predictions: &[Prediction], validation: &[LabelledText], fallback: Scope) -> Scope {
    if validation.iter().all(|t| t.intent.is_some()) {
        return fallback;
    }
    let mut best = (f64::NEG_INFINITY, fallback);
    for c in 0..20 {
        for s in 0..50 {
            let scope = Scope { confidence_below: c as f32 * 0.05, similarity_below: s as f32 * 0.02 };
            let m = score(predictions, validation, scope);
            let value = m.in_scope_accuracy + m.out_of_scope_recall.unwrap_or(0.0);
            if value > best.0 {
                best = (value, scope);
            }
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Scored;

    fn prediction(intent: &str, confidence: f32) -> Prediction {
        Prediction {
            best: Scored { intent: intent.into(), confidence },
            runner_up: Scored { intent: "other".into(), confidence: 1.0 - confidence },
            similarity: 0.9,
        }
    }

    fn confidence_only(below: f32) -> Scope {
        Scope { confidence_below: below, similarity_below: 0.0 }
    }

    fn truth(intent: Option<&str>) -> LabelledText {
        LabelledText { text: String::new(), intent: intent.map(String::from) }
    }

    #[test]
    fn figures_of_a_known_set_of_predictions() {
        let predictions = [
            prediction("a", 0.9),
            prediction("b", 0.9),
            prediction("a", 0.3),
            prediction("a", 0.2),
            prediction("c", 0.8),
        ];
        let truth = [truth(Some("a")), truth(Some("a")), truth(Some("a")), truth(None), truth(None)];
        let m = score(&predictions, &truth, confidence_only(0.5));
        assert_eq!((m.examples, m.out_of_scope_examples), (5, 2));
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-9, "{m:?}");
        assert!((m.in_scope_accuracy - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.out_of_scope_recall, Some(0.5));
        assert!((m.false_out_of_scope - 1.0 / 3.0).abs() < 1e-9);
        // Bins: 0.3 (right, 1 of 1) and 0.9 (1 right of 2).
        assert_eq!(m.reliability.len(), 2);
        let expected = ((0.3f64 - 1.0).abs() + 2.0 * (0.9f64 - 0.5).abs()) / 3.0;
        assert!((m.calibration_error - expected).abs() < 1e-6, "{}", m.calibration_error);
    }

    #[test]
    fn the_thresholds_separate_confident_in_scope_from_timid_or_distant_out_of_scope() {
        let far = Prediction { similarity: 0.3, ..prediction("b", 0.9) };
        let predictions = [prediction("a", 0.8), prediction("b", 0.7), prediction("a", 0.2), far];
        let validation = [truth(Some("a")), truth(Some("b")), truth(None), truth(None)];
        let scope = choose_scope(&predictions, &validation, confidence_only(0.5));
        let m = score(&predictions, &validation, scope);
        assert_eq!((m.in_scope_accuracy, m.out_of_scope_recall), (1.0, Some(1.0)), "{scope:?}");
        assert_eq!(choose_scope(&predictions, &validation[..2], confidence_only(0.42)), confidence_only(0.42));
    }
}
