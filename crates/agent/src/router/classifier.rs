//! The intent classifier: a multinomial logistic regression over sentence vectors (fitted
//! by L-BFGS in `linfa-logistic`), whose probabilities are temperature-scaled on examples
//! it was not fitted on, so that a confidence of 0.8 is right about four times in five.
//! The out-of-scope and clarifying thresholds are only meaningful on calibrated numbers.

use linfa::prelude::*;
use linfa::Dataset;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};

/// How the classifier is fitted.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// L2 penalty on the weights (the loss is summed over examples, so a larger training set
    /// weighs it less).
    pub regularisation: f64,
    /// L-BFGS iterations at most.
    pub max_iterations: u64,
    /// Share of each intent's examples held out to fit the temperature (at least one when an
    /// intent has three or more); the final model is then fitted on every example.
    pub calibration_share: f64,
}

impl Default for ClassifierConfig {
    /// Regularisation 10 (of 0.3 to 30, the best accuracy and calibration on the Acme
    /// intents, cross-validated), 200 iterations, a fifth held out for calibration.
    fn default() -> Self {
        Self { regularisation: 10.0, max_iterations: 200, calibration_share: 0.2 }
    }
}

impl ClassifierConfig {
    /// Settings that cannot work are refused, naming the key.
    pub fn check(&self) -> Result<(), ClassifierError> {
        if !(self.regularisation.is_finite() && self.regularisation > 0.0) {
            return Err(ClassifierError::Settings(format!(
                "regularisation must be a positive number; got {}",
                self.regularisation
            )));
        }
        if self.max_iterations == 0 {
            return Err(ClassifierError::Settings("max_iterations must be at least 1".into()));
        }
        if !(0.0..0.5).contains(&self.calibration_share) {
            return Err(ClassifierError::Settings(format!(
                "calibration_share must be in [0, 0.5); got {}",
                self.calibration_share
            )));
        }
        Ok(())
    }
}

/// Why a classifier could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("an intent classifier needs examples of at least two intents; got {0}")]
    TooFewIntents(usize),
    #[error("intent {0:?} has no examples")]
    NoExamples(String),
    #[error("example vectors have {found} dimensions where {expected} were expected")]
    Dimensions { expected: usize, found: usize },
    #[error("classifier settings: {0}")]
    Settings(String),
    #[error("fitting the classifier failed: {0}")]
    Fit(String),
}

/// A fitted classifier: per-feature standardisation, weights, biases and a temperature.
#[derive(Debug, Clone)]
pub struct IntentClassifier {
    labels: Vec<String>,
    mean: Vec<f32>,
    /// One over each feature's standard deviation in the training vectors.
    scale: Vec<f32>,
    linear: Linear,
    temperature: f32,
}

impl IntentClassifier {
    /// Fits a classifier on `vectors` labelled by index into `labels`. Costs two fits (one
    /// without the held-out share, to calibrate on it, then the final one), each
    /// `O(iterations × examples × dimensions × intents)`.
    pub fn fit(
        labels: Vec<String>,
        vectors: &[Vec<f32>],
        targets: &[usize],
        config: &ClassifierConfig,
    ) -> Result<Self, ClassifierError> {
        check(&labels, vectors, targets, config)?;
        let dimensions = vectors[0].len();
        let (mean, scale) = standardisation(vectors, dimensions);
        let standardised: Vec<Vec<f32>> = vectors.iter().map(|v| standardise(v, &mean, &scale)).collect();

        let (fit_part, held_out) = calibration_split(targets, labels.len(), config.calibration_share);
        let temperature = if held_out.is_empty() {
            1.0
        } else {
            let partial = fit_linear(&standardised, targets, &fit_part, labels.len(), config)?;
            let logits: Vec<Vec<f32>> = held_out.iter().map(|&i| partial.logits(&standardised[i])).collect();
            let truth: Vec<usize> = held_out.iter().map(|&i| targets[i]).collect();
            fit_temperature(&logits, &truth)
        };
        let all: Vec<usize> = (0..vectors.len()).collect();
        let linear = fit_linear(&standardised, targets, &all, labels.len(), config)?;
        Ok(Self { labels, mean, scale, linear, temperature })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The softmax temperature fitted on held-out examples (1.0 when none were held out).
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    pub fn dimensions(&self) -> usize {
        self.mean.len()
    }

    /// Calibrated probability of each label for `vector` (in label order, summing to 1).
    pub fn probabilities(&self, vector: &[f32]) -> Vec<f32> {
        softmax(&self.linear.logits(&standardise(vector, &self.mean, &self.scale)), self.temperature)
    }
}

/// Weights and biases of a linear layer, `dimensions` inputs.
#[derive(Debug, Clone)]
struct Linear {
    /// One row of `dimensions` weights per label.
    weights: Vec<f32>,
    bias: Vec<f32>,
    dimensions: usize,
}

impl Linear {
    fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.bias
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let row = &self.weights[k * self.dimensions..(k + 1) * self.dimensions];
                b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
            })
            .collect()
    }
}

fn check(
    labels: &[String],
    vectors: &[Vec<f32>],
    targets: &[usize],
    config: &ClassifierConfig,
) -> Result<(), ClassifierError> {
    if labels.len() < 2 {
        return Err(ClassifierError::TooFewIntents(labels.len()));
    }
    if vectors.len() != targets.len() {
        return Err(ClassifierError::Settings(format!("{} vectors for {} labels", vectors.len(), targets.len())));
    }
    if let Some(&bad) = targets.iter().find(|&&t| t >= labels.len()) {
        return Err(ClassifierError::Settings(format!("label index {bad} is out of range")));
    }
    if let Some(missing) = (0..labels.len()).find(|k| !targets.contains(k)) {
        return Err(ClassifierError::NoExamples(labels[missing].clone()));
    }
    let expected = vectors[0].len();
    if let Some(v) = vectors.iter().find(|v| v.len() != expected || v.iter().any(|x| !x.is_finite())) {
        return Err(ClassifierError::Dimensions { expected, found: v.len() });
    }
    config.check()
}

/// Each feature's mean and inverse standard deviation (1 where a feature is constant).
fn standardisation(vectors: &[Vec<f32>], dimensions: usize) -> (Vec<f32>, Vec<f32>) {
    let n = vectors.len() as f64;
    let mut mean = vec![0f64; dimensions];
    for v in vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += f64::from(*x) / n;
        }
    }
    let mut variance = vec![0f64; dimensions];
    for v in vectors {
        for ((s, x), m) in variance.iter_mut().zip(v).zip(&mean) {
            *s += (f64::from(*x) - m).powi(2) / n;
        }
    }
    let scale = variance.iter().map(|s| if *s > 1e-12 { (1.0 / s.sqrt()) as f32 } else { 1.0 }).collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

fn standardise(vector: &[f32], mean: &[f32], scale: &[f32]) -> Vec<f32> {
    vector.iter().zip(mean).zip(scale).map(|((x, m), s)| (x - m) * s).collect()
}

/// Indices to fit on and indices held out: every `1 / share`-th example of each intent
/// with at least three, so the split is the same on every start.
fn calibration_split(targets: &[usize], intents: usize, share: f64) -> (Vec<usize>, Vec<usize>) {
    if share <= 0.0 {
        return ((0..targets.len()).collect(), Vec::new());
    }
    let mut counts = vec![0usize; intents];
    for &t in targets {
        counts[t] += 1;
    }
    let stride = (1.0 / share).round().max(2.0) as usize;
    let mut seen = vec![0usize; intents];
    let (mut fit, mut held) = (Vec::new(), Vec::new());
    for (i, &t) in targets.iter().enumerate() {
        seen[t] += 1;
        if counts[t] >= 3 && seen[t] % stride == 0 {
            held.push(i);
        } else {
            fit.push(i);
        }
    }
    (fit, held)
}

fn fit_linear(
    vectors: &[Vec<f32>],
    targets: &[usize],
    rows: &[usize],
    intents: usize,
    config: &ClassifierConfig,
) -> Result<Linear, ClassifierError> {
    let dimensions = vectors[0].len();
    let mut records = Array2::<f64>::zeros((rows.len(), dimensions));
    for (r, &i) in rows.iter().enumerate() {
        for (d, x) in vectors[i].iter().enumerate() {
            records[[r, d]] = f64::from(*x);
        }
    }
    let labels: Array1<usize> = rows.iter().map(|&i| targets[i]).collect();
    let dataset = Dataset::new(records, labels);
    let fitted = MultiLogisticRegression::default()
        .alpha(config.regularisation)
        .max_iterations(config.max_iterations)
        .fit(&dataset)
        .map_err(|e| ClassifierError::Fit(e.to_string()))?;
    // linfa orders its classes by value; an intent missing from `rows` (held out entirely)
    // keeps a bias far below every other, so it is never predicted by this partial model.
    let mut weights = vec![0f32; intents * dimensions];
    let mut bias = vec![-1e4f32; intents];
    for (column, &class) in fitted.classes().iter().enumerate() {
        bias[class] = fitted.intercept()[column] as f32;
        for d in 0..dimensions {
            weights[class * dimensions + d] = fitted.params()[[d, column]] as f32;
        }
    }
    Ok(Linear { weights, bias, dimensions })
}

/// The temperature minimising the negative log-likelihood of `truth` under
/// `softmax(logits / T)`, by golden-section search over T in [0.05, 20] (the likelihood is
/// unimodal in log T).
fn fit_temperature(logits: &[Vec<f32>], truth: &[usize]) -> f32 {
    let nll = |log_t: f64| -> f64 {
        let t = log_t.exp() as f32;
        logits.iter().zip(truth).map(|(l, &k)| -f64::from(softmax(l, t)[k].max(1e-12)).ln()).sum()
    };
    let (mut lo, mut hi) = (0.05f64.ln(), 20f64.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let a = hi - ratio * (hi - lo);
        let b = lo + ratio * (hi - lo);
        if nll(a) < nll(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    ((lo + hi) / 2.0).exp() as f32
}

fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| ((l - max) / temperature).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in four dimensions, with a little deterministic noise.
    fn clusters(per_class: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let centres = [[1.0, 0.0, 0.0, 0.2], [0.0, 1.0, 0.0, 0.2], [0.0, 0.0, 1.0, 0.2]];
        let (mut vectors, mut targets) = (Vec::new(), Vec::new());
        for i in 0..per_class * 3 {
            let class = i % 3;
            let noise = |j: usize| ((i * 7 + j * 13) % 11) as f32 / 40.0 - 0.125;
            vectors.push((0..4).map(|j| centres[class][j] + noise(j)).collect());
            targets.push(class);
        }
        (vectors, targets)
    }

    fn labels() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    #[test]
    fn separable_intents_are_recognised_with_high_calibrated_confidence() {
        let (vectors, targets) = clusters(10);
        let classifier = IntentClassifier::fit(labels(), &vectors, &targets, &ClassifierConfig::default()).unwrap();
        for (v, &t) in vectors.iter().zip(&targets) {
            let p = classifier.probabilities(v);
            let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            assert_eq!(best, t, "{p:?}");
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
        assert!(classifier.temperature() > 0.0 && classifier.temperature().is_finite());
    }

    #[test]
    fn a_point_between_intents_gets_a_lower_confidence_than_one_at_a_centre() {
        let (vectors, targets) = clusters(10);
        let classifier = IntentClassifier::fit(labels(), &vectors, &targets, &ClassifierConfig::default()).unwrap();
        let centre = classifier.probabilities(&[1.0, 0.0, 0.0, 0.2]);
        let between = classifier.probabilities(&[0.5, 0.5, 0.0, 0.2]);
        let top = |p: &[f32]| p.iter().copied().fold(0.0, f32::max);
        assert!(top(&between) < top(&centre), "{between:?} vs {centre:?}");
    }

    #[test]
    fn the_temperature_softens_overconfident_logits_and_sharpens_timid_ones() {
        // Logits of 10 that are right only half the time want a higher temperature.
        let logits = vec![vec![10.0, 0.0], vec![10.0, 0.0]];
        assert!(fit_temperature(&logits, &[0, 1]) > 5.0);
        // Logits of 0.1 that are always right want a low one.
        let timid = vec![vec![0.1, 0.0]; 4];
        assert!(fit_temperature(&timid, &[0, 0, 0, 0]) < 0.1);
    }

    #[test]
    fn the_held_out_share_is_deterministic_and_spares_small_intents() {
        let targets = [0, 0, 0, 0, 0, 1, 1];
        let (fit, held) = calibration_split(&targets, 2, 0.2);
        assert_eq!(held, vec![4]);
        assert_eq!(fit.len() + held.len(), targets.len());
        assert_eq!(calibration_split(&targets, 2, 0.0).1, Vec::<usize>::new());
    }

    #[test]
    fn unusable_training_data_is_refused_with_the_reason() {
        let config = ClassifierConfig::default();
        let one = IntentClassifier::fit(vec!["a".into()], &[vec![1.0]], &[0], &config).unwrap_err();
        assert!(matches!(one, ClassifierError::TooFewIntents(1)));
        let empty = IntentClassifier::fit(labels(), &[vec![1.0], vec![0.0]], &[0, 1], &config).unwrap_err();
        assert!(empty.to_string().contains("\"c\" has no examples"), "{empty}");
        let ragged =
            IntentClassifier::fit(labels(), &[vec![1.0], vec![0.0, 1.0], vec![1.0]], &[0, 1, 2], &config).unwrap_err();
        assert!(matches!(ragged, ClassifierError::Dimensions { expected: 1, found: 2 }));
        let (vectors, targets) = clusters(2);
        let bad = ClassifierConfig { regularisation: 0.0, ..config };
        assert!(IntentClassifier::fit(labels(), &vectors, &targets, &bad).is_err());
    }
}
