//! Combining ranked lists (keyword and vector) into one, and picking a diverse top few.
//!
//! Reciprocal rank fusion needs no score calibration: a chunk scores `Σ 1 / (k + rank)` over
//! the lists it appears in. Weighted fusion min-max normalises each list's scores to [0, 1]
//! and mixes them, for a tenant that knows one signal is better. Maximal marginal relevance
//! then takes, one at a time, the candidate with the best trade-off of relevance against
//! similarity to those already taken.
//!
//! Invariant: pure functions of their inputs; ties are broken by key so the same inputs give
//! the same order every time.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How two ranked lists become one. Both constants are always present (with defaults), so
/// that a configuration layered over another can switch the method alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fusion {
    pub method: FusionMethod,
    /// The reciprocal-rank constant (60 in the literature).
    pub k: f32,
    /// The vector list's share in weighted fusion.
    pub vector_weight: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    /// Reciprocal rank fusion: `Σ 1 / (k + rank)`.
    Rrf,
    /// `vector_weight · vector + (1 − vector_weight) · keyword`, each normalised to [0, 1].
    Weighted,
}

impl Default for Fusion {
    fn default() -> Self {
        Self { method: FusionMethod::Rrf, k: 60.0, vector_weight: 0.7 }
    }
}

impl Fusion {
    pub fn rrf(k: f32) -> Self {
        Self { method: FusionMethod::Rrf, k, ..Self::default() }
    }

    pub fn weighted(vector_weight: f32) -> Self {
        Self { method: FusionMethod::Weighted, vector_weight, ..Self::default() }
    }

    /// Whether the settings make sense; what is wrong when they do not.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.k.is_finite() && self.k >= 0.0) {
            return Err(format!("fusion k is {}; expected 0 or more", self.k));
        }
        if !(0.0..=1.0).contains(&self.vector_weight) {
            return Err(format!("fusion vector_weight is {}; expected 0.0 to 1.0", self.vector_weight));
        }
        Ok(())
    }
}

/// `keyword` and `vector` (each best first, as `(key, score)`) fused, best first.
pub fn fuse(fusion: Fusion, keyword: &[(u64, f32)], vector: &[(u64, f32)]) -> Vec<(u64, f32)> {
    let mut fused: HashMap<u64, f32> = HashMap::new();
    let (k, vector_weight) = (fusion.k, fusion.vector_weight);
    match fusion.method {
        FusionMethod::Rrf => {
            for list in [keyword, vector] {
                for (rank, &(key, _)) in list.iter().enumerate() {
                    *fused.entry(key).or_default() += 1.0 / (k + rank as f32 + 1.0);
                }
            }
        }
        FusionMethod::Weighted => {
            for (list, weight) in [(keyword, 1.0 - vector_weight), (vector, vector_weight)] {
                for (key, score) in normalised(list) {
                    *fused.entry(key).or_default() += weight * score;
                }
            }
        }
    }
    let mut ranked: Vec<(u64, f32)> = fused.into_iter().collect();
    sort_best_first(&mut ranked);
    ranked
}

/// Scores min-max normalised to [0, 1]; all equal → all 1.
fn normalised(list: &[(u64, f32)]) -> impl Iterator<Item = (u64, f32)> + '_ {
    let (lo, hi) = list.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &(_, s)| (lo.min(s), hi.max(s)));
    let span = hi - lo;
    list.iter().map(move |&(key, s)| (key, if span > f32::EPSILON { (s - lo) / span } else { 1.0 }))
}

/// Best first, ties by key.
pub fn sort_best_first(ranked: &mut [(u64, f32)]) {
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// Up to `take` of `candidates` (best first, scored) chosen by maximal marginal relevance:
/// each next pick maximises `lambda · relevance − (1 − lambda) · max similarity to the picks`,
/// relevance being the score normalised to [0, 1] and `similarity(a, b)` a cosine. A
/// candidate `similarity` knows nothing about counts as unlike every other. `lambda` 1 keeps
/// the order as it is.
pub fn mmr(
    candidates: &[(u64, f32)],
    take: usize,
    lambda: f32,
    similarity: impl Fn(u64, u64) -> Option<f32>,
) -> Vec<(u64, f32)> {
    let relevance: Vec<f32> = normalised(candidates).map(|(_, score)| score).collect();
    // Each candidate's highest similarity to a pick so far, brought up to date with each new
    // pick alone: one similarity per candidate and pick, not one per pair of picks again.
    let mut redundancy = vec![0.0_f32; candidates.len()];
    let mut left: Vec<usize> = (0..candidates.len()).collect();
    let mut picked: Vec<usize> = Vec::with_capacity(take.min(candidates.len()));
    while picked.len() < take && !left.is_empty() {
        let value = |i: usize| lambda * relevance[i] - (1.0 - lambda) * redundancy[i];
        let (position, _) = left
            .iter()
            .enumerate()
            .map(|(pos, &i)| (pos, value(i)))
            // The first of equal values wins: the higher-ranked candidate.
            .fold((0, f32::NEG_INFINITY), |best, (pos, v)| if v > best.1 { (pos, v) } else { best });
        let pick = left.remove(position);
        picked.push(pick);
        if picked.len() < take {
            for &i in &left {
                if let Some(similar) = similarity(candidates[i].0, candidates[pick].0) {
                    redundancy[i] = redundancy[i].max(similar);
                }
            }
        }
    }
    picked.into_iter().map(|i| candidates[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement_between_the_lists() {
        let keyword = [(1, 9.0), (2, 5.0), (5, 2.0), (3, 1.0)];
        let vector = [(3, 0.9), (2, 0.8), (4, 0.7)];
        let fused = fuse(Fusion::rrf(60.0), &keyword, &vector);
        let keys: Vec<u64> = fused.iter().map(|f| f.0).collect();
        // 2 is second in both lists; 3 first and fourth; the rest in one list each, and 4
        // and 5 (both third) tie, broken by key.
        assert_eq!(keys, [2, 3, 1, 4, 5]);
        let expected = 1.0 / 62.0 + 1.0 / 62.0;
        assert!((fused[0].1 - expected).abs() < 1e-6);
    }

    #[test]
    fn weighted_fusion_mixes_normalised_scores() {
        let keyword = [(1, 20.0), (2, 10.0)];
        let vector = [(2, 0.9), (1, 0.5)];
        let by_vector = fuse(Fusion::weighted(0.8), &keyword, &vector);
        assert_eq!(by_vector[0], (2, 0.8));
        let by_keyword = fuse(Fusion::weighted(0.2), &keyword, &vector);
        assert_eq!(by_keyword[0], (1, 0.8));
        assert!(Fusion::weighted(1.5).validate().is_err());
        assert!(Fusion::rrf(-1.0).validate().is_err());
    }

    #[test]
    fn mmr_skips_near_duplicates_and_keeps_order_at_lambda_one() {
        let candidates = [(1, 1.0), (2, 0.95), (3, 0.9), (4, 0.0)];
        // 1 and 2 say the same thing; 3 is different.
        let similarity = |a: u64, b: u64| Some(if a.min(b) == 1 && a.max(b) == 2 { 0.99 } else { 0.1 });
        let diverse: Vec<u64> = mmr(&candidates, 2, 0.5, similarity).iter().map(|c| c.0).collect();
        assert_eq!(diverse, [1, 3]);
        let ordered: Vec<u64> = mmr(&candidates, 4, 1.0, similarity).iter().map(|c| c.0).collect();
        assert_eq!(ordered, [1, 2, 3, 4]);
        assert!(mmr(&candidates, 0, 0.5, similarity).is_empty());
        assert_eq!(mmr(&candidates, 10, 0.5, |_, _| None).len(), 4);
    }
}
