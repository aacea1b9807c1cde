//! `linear`: y = residual + layer_scale ⊙ act(norm(x·Wᵀ) + b), the GEMM of every transformer block with its
//! epilogue fused (applied to each output tile as the GEMM kernel finishes it, on the CPU and on CUDA).
//! `W` is `[N, K]` as Hugging Face stores `nn.Linear` weights. The CPU kernel reads Wᵀ packed into panels
//! (`pack_weight`; `nn::Linear` packs once and keeps it); no other transpose is materialised.
//! LoRA terms join x·Wᵀ before the epilogue; the backward (`backward.rs`) gives gradients to whichever of x,
//! W, the epilogue's tensors and the LoRA factors are tracked, and computes nothing for the others.

mod backward;
mod cpu;

use crate::autograd;
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

use super::sgemm::{self, PackedB};
use super::Activation;

/// What happens to x·Wᵀ before it is written: row normalisation, LoRA terms, bias, activation, layer scale,
/// residual add (in that order).
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub row_norm: Option<RowNorm<'a>>,
    pub lora: &'a [LoraTerm],
    pub bias: Option<&'a Tensor>,
    pub activation: Activation,
    pub layer_scale: Option<&'a Tensor>,
    pub residual: Option<&'a Tensor>,
}

/// A LayerNorm folded into the linear after it (`nn::NormedLinear`): `v ↦ rstd_i·(v − mean_i·col_sum_j)`, with
/// `stats` the f32 `[rows, 2]` of `layer_norm_stats` and `col_sum` f32 `[N]` (the row sums of γ ⊙ W).
#[derive(Clone, Copy)]
pub struct RowNorm<'a> {
    pub stats: &'a Tensor,
    pub col_sum: &'a Tensor,
}

/// A low-rank adapter on output columns `start..start + len`: `scale·(x·Aᵀ)·Bᵀ` is added there, with A
/// `[r, K]` and B `[len, r]` as peft stores `lora_A` / `lora_B` (scale = α/r, or α/√r for rsLoRA).
#[derive(Clone)]
pub struct LoraTerm {
    pub start: usize,
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f32,
    /// Dropout on the term's input while training (peft's `lora_dropout`): x·mask where each element is kept
    /// with probability 1 − p and then divided by it. The mask is a function of `seed` and the element's
    /// index, so the backward recomputes it and a run is reproducible.
    pub dropout: Option<LoraDropout>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraDropout {
    pub p: f32,
    pub seed: u64,
}

impl LoraDropout {
    /// The multiplier of element `i`: 0 (dropped) or 1/(1 − p).
    pub fn mask(&self, i: usize) -> f32 {
        let z = crate::seed::mix(self.seed ^ (i as u64).wrapping_mul(crate::seed::GOLDEN));
        let uniform = (z >> 40) as f32 / (1u64 << 24) as f32;
        if uniform < self.p {
            0.0
        } else {
            1.0 / (1.0 - self.p)
        }
    }

    /// x with the mask applied.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        x.iter().enumerate().map(|(i, v)| v * self.mask(i)).collect()
    }
}

impl LoraTerm {
    /// What the term reads of x: x itself, or x with the dropout mask applied.
    fn input<'x>(&self, x: &'x [f32]) -> std::borrow::Cow<'x, [f32]> {
        match &self.dropout {
            Some(d) => std::borrow::Cow::Owned(d.apply(x)),
            None => std::borrow::Cow::Borrowed(x),
        }
    }

    fn rank(&self) -> usize {
        self.a.shape()[0]
    }
    fn len(&self) -> usize {
        self.b.shape()[0]
    }
}

impl<'a> Epilogue<'a> {
    pub fn bias(bias: Option<&'a Tensor>) -> Self {
        Epilogue { row_norm: None, lora: &[], bias, activation: Activation::None, layer_scale: None, residual: None }
    }
    pub fn with_lora(mut self, lora: &'a [LoraTerm]) -> Self {
        self.lora = lora;
        self
    }
    pub fn with_row_norm(mut self, row_norm: RowNorm<'a>) -> Self {
        self.row_norm = Some(row_norm);
        self
    }
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    pub fn with_layer_scale(mut self, layer_scale: Option<&'a Tensor>) -> Self {
        self.layer_scale = layer_scale;
        self
    }
    pub fn with_residual(mut self, residual: &'a Tensor) -> Self {
        self.residual = Some(residual);
        self
    }
}

/// x `[…, K]` · w `[N, K]`ᵀ with `epilogue`, giving `[…, N]`.
pub fn linear(x: &Tensor, w: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
    linear_packed(x, w, None, epilogue)
}

/// Wᵀ packed for the CPU GEMM kernel, or `None` where that kernel is not used (no AVX2/FMA, or `w` not a 2-D
/// CPU tensor). A packed copy holds as many values as `w` (N rounded up to 16).
pub fn pack_weight(w: &Tensor) -> Option<PackedB> {
    let [n, k] = w.dims::<2>("linear").ok()?;
    (sgemm::available()).then_some(())?;
    Some(PackedB::from_weight_t(w.cpu_slice().ok()?, n, k))
}

/// `linear` with `packed` = `pack_weight(w)` made earlier (CPU only; ignored on other devices). Without it the
/// CPU path packs W on every call.
pub fn linear_packed(x: &Tensor, w: &Tensor, packed: Option<&PackedB>, epilogue: Epilogue) -> Result<Tensor> {
    let (n, k, out_shape) = check(x, w, &epilogue)?;
    let inputs = backward::inputs(x, w, &epilogue);
    let tracked = inputs.iter().any(|t| t.is_tracked());
    if tracked && epilogue.row_norm.is_some() {
        return Err(Error::invalid("linear", "a LayerNorm folded into the GEMM has no backward (unfold it to train)"));
    }
    let out = match x.storage() {
        Storage::Cpu(_) => {
            let out = cpu::linear(x.cpu_slice()?, w.cpu_slice()?, packed, (x.rows(), n, k), &epilogue)?;
            Tensor::from_vec(out, &out_shape)?
        }
        Storage::Gpu(_) if !epilogue.lora.is_empty() => return Err(autograd::cpu_only("linear with LoRA terms")),
        Storage::Gpu(_) => super::gpu::linear(x, w, &epilogue, (x.rows(), n, k), &out_shape)?,
    };
    Ok(autograd::record(out, &inputs, || backward::LinearBackward::new(x, w, &epilogue)))
}

/// `linear_packed`, also returning `layer_norm_stats(y, eps)` (f32 `[rows, 2]`) for a LayerNorm folded into the
/// next linear. On a GPU the GEMM's epilogue computes them as it stores y, so y is not read again.
pub fn linear_with_row_stats(
    x: &Tensor,
    w: &Tensor,
    packed: Option<&PackedB>,
    epilogue: Epilogue,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    match x.storage() {
        Storage::Cpu(_) => {
            let y = linear_packed(x, w, packed, epilogue)?;
            let stats = super::layer_norm_stats(&y, eps)?;
            Ok((y, stats))
        }
        Storage::Gpu(_) => {
            if backward::inputs(x, w, &epilogue).iter().any(|t| t.is_tracked()) {
                return Err(autograd::cpu_only("linear with row statistics"));
            }
            let (n, k, out_shape) = check(x, w, &epilogue)?;
            super::gpu::linear_with_row_stats(x, w, &epilogue, (x.rows(), n, k), &out_shape, eps)
        }
    }
}

/// (N, K, output shape) once x, w and the epilogue agree.
fn check(x: &Tensor, w: &Tensor, epilogue: &Epilogue) -> Result<(usize, usize, Vec<usize>)> {
    let [n, k] = w.dims::<2>("linear")?;
    if x.last_dim() != k {
        return Err(Error::shape("linear", format!("input {:?} against weight {:?}", x.shape(), w.shape())));
    }
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().unwrap() = n;
    check_epilogue(epilogue, n, k, &out_shape)?;
    Ok((n, k, out_shape))
}

fn check_epilogue(e: &Epilogue, n: usize, k: usize, out_shape: &[usize]) -> Result<()> {
    for (what, t) in [("bias", e.bias), ("layer_scale", e.layer_scale)] {
        if let Some(t) = t {
            if t.numel() != n {
                return Err(Error::shape("linear", format!("{what} has {} values for {n} outputs", t.numel())));
            }
        }
    }
    if let Some(RowNorm { stats, col_sum }) = e.row_norm {
        let rows = out_shape.iter().rev().skip(1).product::<usize>();
        if stats.numel() != 2 * rows || col_sum.numel() != n {
            return Err(Error::shape(
                "linear",
                format!("row norm of {} stats and {} column sums for {rows} x {n}", stats.numel(), col_sum.numel()),
            ));
        }
    }
    for term in e.lora {
        let ([r, ka], [len, rb]) = (term.a.dims::<2>("linear lora_A")?, term.b.dims::<2>("linear lora_B")?);
        if term.dropout.is_some_and(|d| !(0.0..1.0).contains(&d.p)) {
            return Err(Error::invalid("linear", "LoRA dropout must be in [0, 1)"));
        }
        if r != rb || ka != k || term.start + len > n || r == 0 {
            return Err(Error::shape(
                "linear",
                format!("LoRA A {:?} and B {:?} at column {} of {n} x {k}", [r, ka], [len, rb], term.start),
            ));
        }
        if e.row_norm.is_some() {
            return Err(Error::invalid("linear", "LoRA terms with a folded LayerNorm"));
        }
    }
    if let Some(r) = e.residual {
        if r.shape() != out_shape {
            return Err(Error::shape("linear", format!("residual {:?} vs output {out_shape:?}", r.shape())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{erf64, rand_vec, rel_err};

    #[allow(clippy::too_many_arguments)]
    fn reference(x: &[f32], w: &[f32], b: &[f32], ls: &[f32], res: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| x[i * k + p] as f64 * w[j * k + p] as f64).sum::<f64>() + b[j] as f64;
                let gelu = 0.5 * dot * (1.0 + erf64(dot / 2f64.sqrt()));
                out[i * n + j] = res[i * n + j] as f64 + ls[j] as f64 * gelu;
            }
        }
        out
    }

    #[test]
    fn fused_epilogue_matches_float64_on_odd_shapes() {
        // The last shape is batch-sized: the CPU kernel takes Strassen's level there (sgemm::strassen).
        let shapes =
            [(1, 1, 1, 1), (7, 13, 5, 2), (33, 65, 129, 3), (130, 17, 64, 4), (197, 100, 1100, 5), (389, 288, 300, 6)];
        for (m, n, k, seed) in shapes {
            let x = rand_vec(m * k, seed, 1.0);
            let w = rand_vec(n * k, seed + 10, 0.5);
            let b = rand_vec(n, seed + 20, 0.5);
            let ls = rand_vec(n, seed + 30, 1.0);
            let res = rand_vec(m * n, seed + 40, 1.0);
            let xt = Tensor::from_vec(x.clone(), &[m, k]).unwrap();
            let wt = Tensor::from_vec(w.clone(), &[n, k]).unwrap();
            let bt = Tensor::from_vec(b.clone(), &[n]).unwrap();
            let lt = Tensor::from_vec(ls.clone(), &[n]).unwrap();
            let rt = Tensor::from_vec(res.clone(), &[m, n]).unwrap();
            let epi = Epilogue::bias(Some(&bt))
                .with_activation(Activation::Gelu)
                .with_layer_scale(Some(&lt))
                .with_residual(&rt);
            let want = reference(&x, &w, &b, &ls, &res, m, n, k);
            // Packed per call, and packed once ahead (as nn::Linear does).
            let packed = pack_weight(&wt);
            for (label, y) in
                [("linear", linear(&xt, &wt, epi)), ("packed", linear_packed(&xt, &wt, packed.as_ref(), epi))]
            {
                let y = y.unwrap();
                assert_eq!(y.shape(), &[m, n]);
                let err = rel_err(&y.to_vec().unwrap(), &want);
                assert!(err < 1e-6, "{label} m={m} n={n} k={k}: rel err {err}");
            }
        }
    }

    #[test]
    fn rejects_mismatched_inner_dimension() {
        let x = Tensor::from_vec(vec![1.0; 6], &[2, 3]).unwrap();
        let w = Tensor::from_vec(vec![1.0; 8], &[2, 4]).unwrap();
        let err = linear(&x, &w, Epilogue::bias(None)).unwrap_err().to_string();
        assert!(err.contains("linear"), "{err}");
    }
}
