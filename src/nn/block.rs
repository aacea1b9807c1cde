//! The pre-LayerNorm transformer block:
//! h = x + ls1 ⊙ O(attn(Q(ln1 x), K(ln1 x), V(ln1 x))),  y = h + ls2 ⊙ fc2(act(fc1(ln2 h))).
//! Residual adds, layer scales and activations are fused into the GEMM epilogues; on request the LayerNorms
//! too (`NormedLinear`).

use crate::error::{Error, Result};
use crate::ops::{self, Activation, LoraTerm};
use crate::tensor::Tensor;
use crate::weights::VarBuilder;

use super::normed::{fold_requested, NormedLinear};
use super::{LayerNorm, Linear};

/// Tensor names of one block, relative to the block's prefix. Lists give accepted spellings, first preferred.
pub struct BlockNames {
    pub norm1: &'static str,
    pub norm2: &'static str,
    pub query: &'static [&'static str],
    pub key: &'static [&'static str],
    pub value: &'static [&'static str],
    pub out: &'static [&'static str],
    pub fc1: &'static [&'static str],
    pub fc2: &'static [&'static str],
    /// Layer-scale vectors (DINOv2), e.g. `layer_scale1.lambda1`.
    pub layer_scale: Option<(&'static str, &'static str)>,
}

impl BlockNames {
    /// The module name of `site` in current transformers (the last spelling listed), as peft names adapters.
    pub fn current(&self, site: LoraSite) -> &'static str {
        let spellings = match site {
            LoraSite::Query => self.query,
            LoraSite::Key => self.key,
            LoraSite::Value => self.value,
            LoraSite::Out => self.out,
            LoraSite::Fc1 => self.fc1,
            LoraSite::Fc2 => self.fc2,
        };
        spellings[spellings.len() - 1]
    }
}

#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub eps: f64,
    pub activation: Activation,
    pub qkv_bias: bool,
    pub causal: bool,
    /// The residual stream is f32 on every device (CLIP's text tower), so LayerNorms cannot fold into GEMMs
    /// that read 16-bit inputs.
    pub f32_stream: bool,
}

struct Block {
    /// norm1, then query, key and value fused: `[3·D, D]`
    qkv: NormedLinear,
    out: Linear,
    /// norm2, then fc1
    fc1: NormedLinear,
    fc2: Linear,
    layer_scale: Option<(Tensor, Tensor)>,
}

pub struct Encoder {
    cfg: EncoderConfig,
    blocks: Vec<Block>,
}

/// The linears of a block a LoRA adapter can sit on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraSite {
    Query,
    Key,
    Value,
    /// the attention output projection
    Out,
    Fc1,
    Fc2,
}

impl Encoder {
    /// Blocks `0..layers` under `vb` (e.g. `encoder.layer` or `encoder.layers`).
    pub fn load(vb: &VarBuilder, cfg: EncoderConfig, names: &BlockNames) -> Result<Encoder> {
        let blocks = (0..cfg.layers).map(|i| Block::load(&vb.pp(i), &cfg, names)).collect::<Result<_>>()?;
        Ok(Encoder { cfg, blocks })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Whether the blocks' LayerNorms are folded into the GEMMs after them (`CPEAL_LN_FOLD=on` on a GPU).
    pub fn folds_layer_norms(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b.qkv, NormedLinear::Folded { .. }))
    }

    /// Adds a LoRA term (`scale·x·Aᵀ·Bᵀ`, A `[r, in]`, B `[out, r]`, dropout on x while training) to `site` of
    /// block `layer`.
    pub fn add_lora(&mut self, layer: usize, site: LoraSite, term: LoraTerm) -> Result<()> {
        let (a, b) = (&term.a, &term.b);
        let layers = self.blocks.len();
        let d = self.cfg.hidden;
        let (in_dim, out) = self.site_dims(site);
        let block = self
            .blocks
            .get_mut(layer)
            .ok_or_else(|| Error::invalid("LoRA", format!("layer {layer} of an encoder with {layers}")))?;
        let (linear, start) = match site {
            LoraSite::Query => (block.qkv.unfolded_linear("LoRA on q")?, 0),
            LoraSite::Key => (block.qkv.unfolded_linear("LoRA on k")?, d),
            LoraSite::Value => (block.qkv.unfolded_linear("LoRA on v")?, 2 * d),
            LoraSite::Out => (&mut block.out, 0),
            LoraSite::Fc1 => (block.fc1.unfolded_linear("LoRA on fc1")?, 0),
            LoraSite::Fc2 => (&mut block.fc2, 0),
        };
        if a.shape().len() != 2 || a.shape()[1] != in_dim || b.shape() != [out, a.shape()[0]] {
            return Err(Error::shape(
                "LoRA",
                format!("A {:?} and B {:?} on {site:?} of layer {layer} ({in_dim} -> {out})", a.shape(), b.shape()),
            ));
        }
        linear.add_lora(LoraTerm { start, ..term });
        Ok(())
    }

    /// The input width of `site`'s linear (the hidden size, or the MLP's for fc2) and its output width.
    pub fn site_dims(&self, site: LoraSite) -> (usize, usize) {
        let (d, f) = (self.cfg.hidden, self.cfg.intermediate);
        match site {
            LoraSite::Fc1 => (d, f),
            LoraSite::Fc2 => (f, d),
            _ => (d, d),
        }
    }

    /// Every linear with LoRA terms, merged (`Linear::merged`): checkpoint tensor names and their new values.
    pub fn merged_weights(&mut self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for block in &mut self.blocks {
            for normed in [&mut block.qkv, &mut block.fc1] {
                if let Ok(linear) = normed.unfolded_linear("") {
                    out.extend(linear.merged()?);
                }
            }
            out.extend(block.out.merged()?);
            out.extend(block.fc2.merged()?);
        }
        Ok(out)
    }

    /// Removes every LoRA term (before placing updated ones).
    pub fn clear_lora(&mut self) {
        for block in &mut self.blocks {
            for linear in [&mut block.out, &mut block.fc2] {
                linear.lora.clear();
            }
            for normed in [&mut block.qkv, &mut block.fc1] {
                if let Ok(linear) = normed.unfolded_linear("") {
                    linear.lora.clear();
                }
            }
        }
    }

    pub fn forward(&self, mut x: Tensor) -> Result<Tensor> {
        // With folded LayerNorms, each block's last GEMM also writes the row statistics of its output for the
        // next block's ln1.
        let mut stats = None;
        for (i, block) in self.blocks.iter().enumerate() {
            let next = self.blocks.get(i + 1).and_then(|b| b.qkv.folded_eps());
            (x, stats) = block.forward(&x, stats.as_ref(), next, &self.cfg)?;
        }
        Ok(x)
    }
}

impl Block {
    fn load(vb: &VarBuilder, cfg: &EncoderConfig, n: &BlockNames) -> Result<Block> {
        let (d, f) = (cfg.hidden, cfg.intermediate);
        let layer_scale = match n.layer_scale {
            Some((a, b)) => Some((vb.get(a, &[d])?, vb.get(b, &[d])?)),
            None => None,
        };
        let cpu = vb.on_cpu();
        let qkv = Linear::concat(&[
            Linear::load(&cpu, n.query, d, d, cfg.qkv_bias)?,
            Linear::load(&cpu, n.key, d, d, cfg.qkv_bias)?,
            Linear::load(&cpu, n.value, d, d, cfg.qkv_bias)?,
        ])?;
        let (qkv, fc1) = if !cfg.f32_stream && fold_requested(vb.device())? {
            let fold = |norm: &str, linear: &Linear| {
                NormedLinear::folded(&LayerNorm::load(&cpu, norm, d, cfg.eps)?, linear, vb.device())
            };
            (fold(n.norm1, &qkv)?, fold(n.norm2, &Linear::load(&cpu, n.fc1, d, f, true)?)?)
        } else {
            (
                NormedLinear::separate(LayerNorm::load(vb, n.norm1, d, cfg.eps)?, qkv.to_device(vb.device())?),
                NormedLinear::separate(LayerNorm::load(vb, n.norm2, d, cfg.eps)?, Linear::load(vb, n.fc1, d, f, true)?),
            )
        };
        Ok(Block {
            qkv,
            out: Linear::load(vb, n.out, d, d, true)?,
            fc1,
            fc2: Linear::load(vb, n.fc2, f, d, true)?,
            layer_scale,
        })
    }

    /// The block on x (whose row statistics `x_stats` the previous block may have written), with its output's
    /// statistics when `next_eps` asks for them (the next block folds its ln1).
    fn forward(
        &self,
        x: &Tensor,
        x_stats: Option<&Tensor>,
        next_eps: Option<f64>,
        cfg: &EncoderConfig,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (ls1, ls2) = match &self.layer_scale {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        let attended = ops::attention(&self.qkv.forward(x, x_stats, Activation::None)?, cfg.heads, cfg.causal)?;
        let (h, h_stats) = self.out.forward_with_stats(
            &attended,
            |e| e.with_layer_scale(ls1).with_residual(x),
            self.fc1.folded_eps(),
        )?;
        let hidden = self.fc1.forward(&h, h_stats.as_ref(), cfg.activation)?;
        self.fc2.forward_with_stats(&hidden, |e| e.with_layer_scale(ls2).with_residual(&h), next_eps)
    }
}
