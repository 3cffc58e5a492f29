//! Synthetic vectors shaped like sentence embeddings, and the exact answers to compare an
//! approximate index with. Shared by `tests/vector.rs` and `examples/ann_choice.rs`.
//!
//! Sentence embeddings are unit vectors that bunch into topics, sit in a narrow cone (unrelated
//! sentences still have a cosine of 0.1–0.2) and come in topics of very unequal size. So: a few
//! hundred random centroids leaning towards one shared direction, topic sizes skewed, and each
//! vector a centroid plus isotropic noise, normalised.

/// How far the centroids lean towards the shared direction.
const SHARED_WEIGHT: f32 = 0.4;
/// Length of the noise added to a unit centroid: same-topic vectors end up around 0.6 cosine.
const NOISE_LENGTH: f32 = 0.8;

pub struct ClusteredSpace {
    centroids: Vec<Vec<f32>>,
    noise_sigma: f32,
    rng: fastrand::Rng,
}

impl ClusteredSpace {
    /// `clusters` topics in `dimensions`; the same `seed` gives the same vectors.
    pub fn new(dimensions: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let shared = unit(gaussian_vector(&mut rng, dimensions, 1.0));
        let centroids = (0..clusters)
            .map(|_| {
                let own = unit(gaussian_vector(&mut rng, dimensions, 1.0));
                unit(own.iter().zip(&shared).map(|(o, s)| o + SHARED_WEIGHT * s).collect())
            })
            .collect();
        Self { centroids, noise_sigma: NOISE_LENGTH / (dimensions as f32).sqrt(), rng }
    }

    /// One unit vector from a topic drawn with skewed odds (the first topics are the largest).
    pub fn sample(&mut self) -> Vec<f32> {
        let skewed = self.rng.f32().powi(2);
        let topic = ((skewed * self.centroids.len() as f32) as usize).min(self.centroids.len() - 1);
        let noise = gaussian_vector(&mut self.rng, self.centroids[topic].len(), self.noise_sigma);
        unit(self.centroids[topic].iter().zip(noise).map(|(c, n)| c + n).collect())
    }

    pub fn samples(&mut self, count: usize) -> Vec<Vec<f32>> {
        (0..count).map(|_| self.sample()).collect()
    }
}

fn gaussian_vector(rng: &mut fastrand::Rng, dimensions: usize, sigma: f32) -> Vec<f32> {
    (0..dimensions)
        .map(|_| {
            // Box–Muller; `1 - f64()` lies in (0, 1], so the logarithm is finite.
            let radius = (-2.0 * (1.0 - rng.f64()).ln()).sqrt();
            (radius * (std::f64::consts::TAU * rng.f64()).cos()) as f32 * sigma
        })
        .collect()
}

fn unit(vector: Vec<f32>) -> Vec<f32> {
    let norm = dot(&vector, &vector).sqrt();
    vector.into_iter().map(|value| value / norm).collect()
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The keys of the `k` candidates with the largest dot product with `query`, by brute force.
pub fn exact_top_k<'a>(candidates: impl IntoIterator<Item = (u64, &'a [f32])>, query: &[f32], k: usize) -> Vec<u64> {
    let mut scored: Vec<(u64, f32)> = candidates.into_iter().map(|(key, vector)| (key, dot(query, vector))).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().take(k).map(|(key, _)| key).collect()
}

/// The share of `truth` that `found` contains.
pub fn recall(found: &[u64], truth: &[u64]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    truth.iter().filter(|key| found.contains(key)).count() as f64 / truth.len() as f64
}
