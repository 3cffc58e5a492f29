//! The arithmetic the index does itself: checking and normalising vectors, exact dot products
//! for rescoring, and int8 quantisation.

use super::error::VectorError;

/// `vector` scaled to unit length, so that a dot product is its cosine similarity. Refuses a
/// wrong length, a NaN or infinity, and the zero vector (which has no direction).
pub(crate) fn unit_vector(vector: &[f32], dimensions: usize) -> Result<Vec<f32>, VectorError> {
    if vector.len() != dimensions {
        return Err(VectorError::Dimensions { expected: dimensions, actual: vector.len() });
    }
    if let Some(position) = vector.iter().position(|value| !value.is_finite()) {
        return Err(VectorError::NotFinite { position });
    }
    // In f64, so that large finite components cannot overflow the sum of squares.
    let norm = vector.iter().map(|&value| f64::from(value) * f64::from(value)).sum::<f64>().sqrt();
    if norm == 0.0 {
        return Err(VectorError::ZeroVector);
    }
    Ok(vector.iter().map(|&value| (f64::from(value) / norm) as f32).collect())
}

/// Dot product: every distance the graph computes in float32, the exact rescoring and the
/// knowledge base's MMR. Summed in 32 independent lanes so that the compiler can vectorise it
/// (a single running sum fixes the order of additions and forbids that), and compiled for
/// AVX-512 and AVX2 besides the baseline, the best chosen at run time: the float32 kernel
/// usearch ships accumulates in float64, at half the lanes and on one dependency chain, which
/// made distances the bulk of a search.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 32;
    let mut lanes = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Int8 scalar quantisation of a unit vector, scaled per vector so that its largest component
/// maps to ±127. The graph compares int8 vectors by cosine, which ignores each vector's scale,
/// so no scale needs storing — and using the whole int8 range keeps far more precision than a
/// fixed scale would: the components of a 384-dimensional unit vector are mostly below 0.1.
pub(crate) fn quantize_i8(unit: &[f32]) -> Vec<i8> {
    let largest = unit.iter().fold(0.0f32, |max, value| max.max(value.abs()));
    // A unit vector has a non-zero component, so `largest > 0`.
    let scale = 127.0 / largest;
    unit.iter().map(|value| (value * scale).round().clamp(-127.0, 127.0) as i8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_vector_has_length_one_and_keeps_direction() {
        let unit = unit_vector(&[3.0, 4.0], 2).unwrap();
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn dot_matches_a_plain_sum_whatever_the_length() {
        for length in [0, 1, 19, 32, 384, 401] {
            let a: Vec<f32> = (0..length).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..length).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4, "length {length}");
        }
    }

    #[test]
    fn quantisation_uses_the_full_int8_range() {
        let quantised = quantize_i8(&unit_vector(&[0.1, -0.04, 0.02], 3).unwrap());
        assert_eq!(quantised[0], 127);
        assert_eq!(quantised[1], -51);
    }
}
