//! Building blocks shared by every architecture: `Linear`, `LayerNorm`, and the pre-LayerNorm transformer
//! block that ViT, DINOv2 and both CLIP towers all use (they differ only in tensor names, activation, layer
//! scale and the causal mask). Weights are frozen backbone tensors; adapters hook in at `Linear`.

mod block;
mod normed;
mod patches;

pub use block::{BlockNames, Encoder, EncoderConfig, LoraSite};
pub use normed::NormedLinear;
pub use patches::PatchEmbeddings;

use std::sync::OnceLock;

use crate::error::Result;
use crate::ops::sgemm::PackedB;
use crate::ops::{self, Epilogue, LoraTerm};
use crate::tensor::{Storage, Tensor};
use crate::weights::VarBuilder;

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// LoRA adapters on this layer's output columns (training, or an adapter kept apart from the weights).
    pub lora: Vec<LoraTerm>,
    /// The checkpoint tensors the weight's rows came from, in order, with their row counts (several for the
    /// fused Q/K/V): where a merged adapter is written back.
    pub sources: Vec<(String, usize)>,
    /// Wᵀ packed for the CPU GEMM kernel, made at the first CPU forward (`None` where that kernel is not used).
    /// This is the one copy of the weight beyond those loading makes (none for aligned f32 checkpoints, which
    /// are mapped, except the fused Q/K/V of `concat`; one f32 conversion for f16/bf16 ones).
    packed: OnceLock<Option<PackedB>>,
}

impl Linear {
    /// `{name}.weight` `[out, in]` and, if `with_bias`, `{name}.bias` `[out]`; the first spelling found is used.
    pub fn load(vb: &VarBuilder, names: &[&str], in_dim: usize, out_dim: usize, with_bias: bool) -> Result<Linear> {
        let weights: Vec<String> = names.iter().map(|n| format!("{n}.weight")).collect();
        let found = names.iter().zip(&weights).find(|(_, w)| vb.contains(w)).map(|(n, _)| *n).unwrap_or(names[0]);
        let weight = vb.get_any(&weights.iter().map(String::as_str).collect::<Vec<_>>(), &[out_dim, in_dim])?;
        let bias = if with_bias { Some(vb.get(&format!("{found}.bias"), &[out_dim])?) } else { None };
        let mut linear = Linear::new(weight, bias);
        linear.sources = vec![(vb.path(&format!("{found}.weight")), out_dim)];
        Ok(linear)
    }

    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Linear {
        Linear { weight, bias, lora: Vec::new(), sources: Vec::new(), packed: OnceLock::new() }
    }

    /// Move to `device` in its storage dtype.
    pub fn to_device(&self, device: &crate::Device) -> Result<Linear> {
        let dt = device.storage_dtype();
        let mut moved = Linear::new(
            self.weight.to_device_as(device, dt)?,
            self.bias.as_ref().map(|b| b.to_device_as(device, dt)).transpose()?,
        );
        moved.sources = self.sources.clone();
        Ok(moved)
    }

    /// Several linears over the same input fused into one (outputs side by side): one GEMM instead of many.
    /// This is the one copy the fused weights ever get. The parts must be on the CPU; so is the result.
    pub fn concat(parts: &[Linear]) -> Result<Linear> {
        let in_dim = parts[0].weight.shape()[1];
        let out_dim: usize = parts.iter().map(Linear::out_dim).sum();
        let mut weight = Vec::with_capacity(out_dim * in_dim);
        for p in parts {
            weight.extend_from_slice(p.weight.cpu_slice()?);
        }
        let bias = if parts.iter().all(|p| p.bias.is_some()) {
            let mut b = Vec::with_capacity(out_dim);
            for p in parts {
                b.extend_from_slice(p.bias.as_ref().map(|t| t.cpu_slice()).transpose()?.unwrap_or_default());
            }
            Some(Tensor::from_vec(b, &[out_dim])?)
        } else {
            None
        };
        let weight = Tensor::from_vec(weight, &[out_dim, in_dim])?;
        let mut linear = Linear::new(weight, bias);
        linear.sources = parts.iter().flat_map(|p| p.sources.iter().cloned()).collect();
        Ok(linear)
    }

    pub fn out_dim(&self) -> usize {
        self.weight.shape()[0]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, |e| e)
    }

    /// Forward with more fused into the epilogue (activation, layer scale, residual).
    pub fn forward_with<'a>(&'a self, x: &Tensor, extend: impl FnOnce(Epilogue<'a>) -> Epilogue<'a>) -> Result<Tensor> {
        ops::linear_packed(x, &self.weight, self.packed_for(x), extend(self.epilogue()))
    }

    /// `forward_with`, and with `stats_eps` the LayerNorm statistics of the output rows for a folded LayerNorm
    /// after it (`ops::linear_with_row_stats`: on a GPU, written by the GEMM's epilogue).
    pub fn forward_with_stats<'a>(
        &'a self,
        x: &Tensor,
        extend: impl FnOnce(Epilogue<'a>) -> Epilogue<'a>,
        stats_eps: Option<f64>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let epilogue = extend(self.epilogue());
        let Some(eps) = stats_eps else {
            return Ok((ops::linear_packed(x, &self.weight, self.packed_for(x), epilogue)?, None));
        };
        let (y, stats) = ops::linear_with_row_stats(x, &self.weight, self.packed_for(x), epilogue, eps)?;
        Ok((y, Some(stats)))
    }

    /// The layer's own part of the epilogue: bias and LoRA terms.
    fn epilogue(&self) -> Epilogue<'_> {
        Epilogue::bias(self.bias.as_ref()).with_lora(&self.lora)
    }

    /// W + Σ scale·B·A over the LoRA terms, split back into the checkpoint tensors it came from; none when the
    /// layer has no LoRA term. (CPU, f32; dropout plays no part at inference.)
    pub fn merged(&self) -> Result<Vec<(String, Tensor)>> {
        if self.lora.is_empty() {
            return Ok(Vec::new());
        }
        let [_, k] = self.weight.dims::<2>("merge")?;
        let mut w = self.weight.to_vec()?;
        for term in &self.lora {
            let (a, b, r) = (term.a.to_vec()?, term.b.to_vec()?, term.a.shape()[0]);
            for (row, b_row) in b.chunks(r).enumerate() {
                let w_row = &mut w[(term.start + row) * k..][..k];
                for (q, &bq) in b_row.iter().enumerate() {
                    w_row.iter_mut().zip(&a[q * k..][..k]).for_each(|(w, a)| *w += term.scale * bq * a);
                }
            }
        }
        if self.sources.iter().map(|(_, rows)| rows).sum::<usize>() != self.out_dim() {
            return Err(crate::Error::invalid("merge", "this linear did not come from a checkpoint tensor"));
        }
        let mut start = 0;
        let mut out = Vec::new();
        for (name, rows) in &self.sources {
            out.push((name.clone(), Tensor::from_vec(w[start * k..(start + rows) * k].to_vec(), &[*rows, k])?));
            start += rows;
        }
        Ok(out)
    }

    /// Adds a LoRA term on output columns `start..` (`ops::LoraTerm`); its shapes are checked at the forward.
    pub fn add_lora(&mut self, term: LoraTerm) {
        self.lora.push(term);
    }

    /// The packed Wᵀ for a CPU input (made at the first call).
    fn packed_for(&self, x: &Tensor) -> Option<&PackedB> {
        match x.storage() {
            Storage::Cpu(_) => self.packed.get_or_init(|| ops::pack_weight(&self.weight)).as_ref(),
            Storage::Gpu(_) => None,
        }
    }
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: vb.get(&format!("{name}.weight"), &[dim])?,
            bias: vb.get(&format!("{name}.bias"), &[dim])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}
