//! The BERT encoder of a sentence-embedding model, run over a batch without padding.
//!
//! candle's `BertModel` takes a padded batch: every text is stretched to the longest one and
//! the encoder computes every padded position, masked, in every layer. On support traffic
//! that is a third to a half of the work thrown away (bench/README.md, "Retrieval"). Here
//! the batch's tokens are laid end to end instead: each matrix product (the attention
//! projections and the feed-forward layers, nearly all the arithmetic) runs once over the
//! real tokens of the whole batch, and attention, the one step that must keep texts apart,
//! runs text by text, the texts spread over the embedder's threads.
//!
//! Every step runs on the embedder's own thread pool: the matrix products through candle (its
//! gemm parallelises on the calling rayon pool), the additions, GELU, softmax and layer norms
//! as operations that split their rows over that pool. candle's own element-wise operations
//! run large tensors on a second pool of candle's, whose threads spin between operations:
//! on two cores that spinning took about a tenth of the time from the matrix products, so
//! the encoder never calls them on large tensors (none at all: the attention scale is folded
//! into the query projection at load).
//!
//! The checkpoint, its tensor names and the arithmetic are `BertModel`'s (absolute
//! positions, post-layer-norm blocks, the configured activation), so the vectors are the
//! same within float rounding; `tests/embed.rs` holds them to a float64 reference.
//!
//! Invariant: a text's hidden states depend on that text alone, never on what shares its
//! batch.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Module, Result, Shape, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

/// A batch laid end to end: text `i` holds the tokens `spans[i].0 .. spans[i].0 + spans[i].1`.
#[derive(Debug, Default)]
pub(crate) struct Packed {
    pub(crate) ids: Vec<u32>,
    pub(crate) type_ids: Vec<u32>,
    pub(crate) positions: Vec<u32>,
    pub(crate) spans: Vec<(usize, usize)>,
}

impl Packed {
    /// Appends one text's token ids and token type ids (of equal length).
    pub(crate) fn push(&mut self, ids: &[u32], type_ids: &[u32]) {
        self.spans.push((self.ids.len(), ids.len()));
        self.ids.extend_from_slice(ids);
        self.type_ids.extend_from_slice(type_ids);
        self.positions.extend(0..ids.len() as u32);
    }

    fn tokens(&self) -> usize {
        self.ids.len()
    }
}

pub(crate) struct Encoder {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    activation: HiddenAct,
}

struct Layer {
    /// Query, key and value projections as one matrix: one product instead of three.
    qkv: Dense,
    attention_output: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

impl Encoder {
    /// The encoder's weights from a BERT checkpoint, found under `embeddings.` and `encoder.`,
    /// or under `bert.` or `<model_type>.` before them, as `BertModel::load` finds them.
    pub(crate) fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || hidden % config.num_attention_heads != 0 {
            bail!("hidden_size {hidden} is not a multiple of num_attention_heads {}", config.num_attention_heads);
        }
        let vb = [Some("bert"), config.model_type.as_deref()]
            .into_iter()
            .flatten()
            .map(|prefix| vb.pp(prefix))
            .find(|prefixed| prefixed.contains_tensor("embeddings.word_embeddings.weight"))
            .unwrap_or(vb);
        let embeddings = vb.pp("embeddings");
        let word = embeddings.get((config.vocab_size, hidden), "word_embeddings.weight")?;
        let position = embeddings.get((config.max_position_embeddings, hidden), "position_embeddings.weight")?;
        let token_type = embeddings.get((config.type_vocab_size, hidden), "token_type_embeddings.weight")?;
        let embedding_norm = layer_norm(hidden, config.layer_norm_eps, embeddings.pp("LayerNorm"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config))
            .collect::<Result<_>>()?;
        Ok(Self {
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            heads: config.num_attention_heads,
            head_size: hidden / config.num_attention_heads,
            activation: config.hidden_act,
        })
    }

    /// The sum of the last layer's hidden states over each text's tokens, one vector per text
    /// of `batch`. Runs on the calling thread's rayon pool.
    pub(crate) fn forward_summed(&self, batch: &Packed) -> Result<Vec<Vec<f32>>> {
        let device = self.word.device();
        let tokens = batch.tokens();
        let ids = Tensor::from_slice(&batch.ids, tokens, device)?;
        let type_ids = Tensor::from_slice(&batch.type_ids, tokens, device)?;
        let positions = Tensor::from_slice(&batch.positions, tokens, device)?;
        let embedded = add(
            &add(&self.word.index_select(&ids, 0)?, &self.token_type.index_select(&type_ids, 0)?)?,
            &self.position.index_select(&positions, 0)?,
        )?;
        let mut hidden = self.embedding_norm.forward(&embedded)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, self, &batch.spans)?;
        }
        let width = hidden.dim(1)?;
        let states = hidden.flatten_all()?.to_vec1::<f32>()?;
        Ok(batch
            .spans
            .iter()
            .map(|&(start, len)| {
                let mut sum = vec![0.0f32; width];
                for row in states[start * width..(start + len) * width].chunks_exact(width) {
                    add_into(&mut sum, row);
                }
                sum
            })
            .collect())
    }

    /// Self-attention of one text's tokens (rows `start .. start + len` of `qkv`), heads
    /// side by side: `[len, hidden]`.
    fn attend(&self, qkv: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let hidden = self.heads * self.head_size;
        let rows = qkv.narrow(0, start, len)?;
        let head_major = |part: usize| -> Result<Tensor> {
            rows.narrow(1, part * hidden, hidden)?
                .reshape((len, self.heads, self.head_size))?
                .transpose(0, 1)?
                .contiguous()
        };
        // The query rows come scaled by 1 / √head_size (folded into their projection).
        let (query, key, value) = (head_major(0)?, head_major(1)?, head_major(2)?);
        let weights = candle_nn::ops::softmax_last_dim(&query.matmul(&key.t()?)?)?;
        weights.matmul(&value)?.transpose(0, 1)?.reshape((len, hidden))
    }

    fn activate(&self, xs: &Tensor) -> Result<Tensor> {
        match self.activation {
            HiddenAct::Gelu => xs.apply_op1_no_bwd(&GeluErf),
            HiddenAct::GeluApproximate => xs.gelu(),
            HiddenAct::Relu => xs.relu(),
        }
    }
}

impl Layer {
    fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps;
        let attention = vb.pp("attention");
        let projections = attention.pp("self");
        let (mut weights, mut biases) = (Vec::with_capacity(3), Vec::with_capacity(3));
        for name in ["query", "key", "value"] {
            weights.push(projections.get((hidden, hidden), &format!("{name}.weight"))?);
            biases.push(projections.get(hidden, &format!("{name}.bias"))?);
        }
        // softmax(q·kᵀ / √d) with the division done once, on the weights, instead of on every
        // query.
        let scale = 1.0 / ((hidden / config.num_attention_heads) as f64).sqrt();
        weights[0] = (&weights[0] * scale)?;
        biases[0] = (&biases[0] * scale)?;
        let qkv = Dense { weight: Tensor::cat(&weights, 0)?, bias: Tensor::cat(&biases, 0)? };
        Ok(Self {
            qkv,
            attention_output: linear(hidden, hidden, attention.pp("output.dense"))?,
            attention_norm: layer_norm(hidden, eps, attention.pp("output.LayerNorm"))?,
            intermediate: linear(hidden, inner, vb.pp("intermediate.dense"))?,
            output: linear(inner, hidden, vb.pp("output.dense"))?,
            output_norm: layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
        })
    }

    fn forward(&self, hidden: &Tensor, encoder: &Encoder, spans: &[(usize, usize)]) -> Result<Tensor> {
        let qkv = self.qkv.forward(hidden)?;
        let contexts: Vec<Tensor> =
            spans.par_iter().map(|&(start, len)| encoder.attend(&qkv, start, len)).collect::<Result<_>>()?;
        let context = Tensor::cat(&contexts, 0)?;
        let attended = self.attention_norm.forward(&add(&self.attention_output.forward(&context)?, hidden)?)?;
        let inner = encoder.activate(&self.intermediate.forward(&attended)?)?;
        self.output_norm.forward(&add(&self.output.forward(&inner)?, &attended)?)
    }
}

/// A fully connected layer: `x · weightᵀ + bias`.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        add(&xs.matmul(&self.weight.t()?)?, &self.bias)
    }
}

fn linear(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Dense> {
    Ok(Dense { weight: vb.get((outputs, inputs), "weight")?, bias: vb.get(outputs, "bias")? })
}

/// `lhs + rhs`, `rhs` being of `lhs`'s shape or one row added to every row of `lhs`.
fn add(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    lhs.apply_op2_no_bwd(rhs, &AddRows)
}

/// The addition behind [`add`], rows split over the calling rayon pool.
struct AddRows;

impl CustomOp2 for AddRows {
    fn name(&self) -> &'static str {
        "add-rows-parallel"
    }

    fn cpu_fwd(
        &self,
        lhs: &CpuStorage,
        lhs_layout: &Layout,
        rhs: &CpuStorage,
        rhs_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (Some(lhs), Some(rhs)) = (contiguous_f32(lhs, lhs_layout), contiguous_f32(rhs, rhs_layout)) else {
            bail!("{}: expected contiguous f32 tensors, got {:?} and {:?}", self.name(), lhs.dtype(), rhs.dtype());
        };
        let width = lhs_layout.dims().last().copied().unwrap_or(1).max(1);
        let mut sum = lhs.to_vec();
        if rhs.len() == lhs.len() {
            sum.par_chunks_mut(width).zip(rhs.par_chunks(width)).for_each(|(row, other)| add_into(row, other));
        } else if rhs.len() == width {
            sum.par_chunks_mut(width).for_each(|row| add_into(row, rhs));
        } else {
            bail!("{}: cannot add shape {:?} to shape {:?}", self.name(), rhs_layout.dims(), lhs_layout.dims());
        }
        Ok((CpuStorage::F32(sum), lhs_layout.shape().clone()))
    }
}

fn add_into(row: &mut [f32], other: &[f32]) {
    row.iter_mut().zip(other).for_each(|(x, y)| *x += y);
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Option<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => Some(&values[start..end]),
        _ => None,
    }
}

/// A layer norm stored as `weight` and `bias`, or as `gamma` and `beta` in older checkpoints.
fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let (weight, bias) = match (vb.get(size, "weight"), vb.get(size, "bias")) {
        (Ok(weight), Ok(bias)) => (weight, bias),
        (Err(error), _) | (_, Err(error)) => match (vb.get(size, "gamma"), vb.get(size, "beta")) {
            (Ok(gamma), Ok(beta)) => (gamma, beta),
            _ => return Err(error),
        },
    };
    Ok(LayerNorm::new(weight, bias, eps))
}

/// GELU with the exact (erf) curve, as candle's `gelu_erf`, computed on every thread of the
/// pool: candle's own runs its element-wise operations on one thread, and the feed-forward
/// activations are the largest tensor of a layer.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-parallel"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        const CHUNK: usize = 8192;
        let Some(input) = contiguous_f32(storage, layout) else {
            bail!("{}: expected a contiguous f32 tensor, got {:?}", self.name(), storage.dtype());
        };
        let mut output = vec![0.0f32; input.len()];
        output.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).for_each(|(out, xs)| {
            for (o, &x) in out.iter_mut().zip(xs) {
                *o = (candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * x;
            }
        });
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn add_takes_a_whole_tensor_or_one_row_and_refuses_other_shapes() {
        let lhs = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let row = tensor(&[10.0, 20.0, 30.0], &[3]);
        assert_eq!(add(&lhs, &row).unwrap().to_vec2::<f32>().unwrap(), [[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]);
        assert_eq!(add(&lhs, &lhs).unwrap().to_vec2::<f32>().unwrap(), [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]);
        let error = add(&lhs, &tensor(&[1.0, 2.0], &[2])).unwrap_err().to_string();
        assert!(error.contains("cannot add shape [2] to shape [2, 3]"), "{error}");
        assert!(add(&lhs.t().unwrap(), &row).is_err(), "a transposed view is refused, not read in the wrong order");
    }

    #[test]
    fn gelu_follows_the_erf_curve() {
        let xs = tensor(&[-3.0, -1.0, 0.0, 0.5, 1.0, 3.0], &[6]);
        let ys = xs.apply_op1_no_bwd(&GeluErf).unwrap().to_vec1::<f32>().unwrap();
        // x · Φ(x), Φ the standard normal distribution function.
        let expected = [-0.004_049_8, -0.158_655_25, 0.0, 0.345_731_3, 0.841_344_7, 2.995_950_2];
        for (y, e) in ys.iter().zip(expected) {
            assert!((y - e).abs() < 1e-6, "{ys:?}");
        }
    }

    #[test]
    fn a_packed_batch_records_where_each_text_starts() {
        let mut batch = Packed::default();
        batch.push(&[101, 7, 102], &[0, 0, 0]);
        batch.push(&[101, 102], &[0, 0]);
        assert_eq!(batch.spans, [(0, 3), (3, 2)]);
        assert_eq!(batch.positions, [0, 1, 2, 0, 1]);
    }
}
