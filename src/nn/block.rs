//! The pre-LayerNorm transformer block:
//! h = x + ls1 ⊙ O(attn(Q(ln1 x), K(ln1 x), V(ln1 x))),  y = h + ls2 ⊙ fc2(act(fc1(ln2 h))).
//! Residual adds, layer scales and activations are fused into the GEMM epilogues.

use crate::error::Result;
use crate::ops::{self, Activation};
use crate::tensor::Tensor;
use crate::weights::VarBuilder;

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
}

struct Block {
    norm1: LayerNorm,
    /// query, key and value fused: `[3·D, D]`
    qkv: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_scale: Option<(Tensor, Tensor)>,
}

pub struct Encoder {
    cfg: EncoderConfig,
    blocks: Vec<Block>,
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

    pub fn forward(&self, mut x: Tensor) -> Result<Tensor> {
        for block in &self.blocks {
            x = block.forward(&x, &self.cfg)?;
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
        Ok(Block {
            norm1: LayerNorm::load(vb, n.norm1, d, cfg.eps)?,
            qkv: Linear::concat(&[
                Linear::load(&vb.on_cpu(), n.query, d, d, cfg.qkv_bias)?,
                Linear::load(&vb.on_cpu(), n.key, d, d, cfg.qkv_bias)?,
                Linear::load(&vb.on_cpu(), n.value, d, d, cfg.qkv_bias)?,
            ])?
            .to_device(vb.device())?,
            out: Linear::load(vb, n.out, d, d, true)?,
            norm2: LayerNorm::load(vb, n.norm2, d, cfg.eps)?,
            fc1: Linear::load(vb, n.fc1, d, f, true)?,
            fc2: Linear::load(vb, n.fc2, f, d, true)?,
            layer_scale,
        })
    }

    fn forward(&self, x: &Tensor, cfg: &EncoderConfig) -> Result<Tensor> {
        let (ls1, ls2) = match &self.layer_scale {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        let normed = self.norm1.forward(x)?;
        let attended = ops::attention(&self.qkv.forward(&normed)?, cfg.heads, cfg.causal)?;
        let h = self.out.forward_with(&attended, |e| e.with_layer_scale(ls1).with_residual(x))?;
        let hidden = self.fc1.forward_with(&self.norm2.forward(&h)?, |e| e.with_activation(cfg.activation))?;
        self.fc2.forward_with(&hidden, |e| e.with_layer_scale(ls2).with_residual(&h))
    }
}
