//! CLIP (Radford et al. 2021) as transformers' `CLIPModel`, `CLIPVisionModel(WithProjection)` and
//! `CLIPTextModel(WithProjection)` (openai/clip-vit-base-patch16 and friends). Both towers are pre-LN
//! transformers (quick-GELU in OpenAI's checkpoints); the vision tower pools the post-LN class token, the text
//! tower the end-of-text token under a causal mask. A full `CLIPModel` unit-normalises both embeddings and
//! scores image–text pairs as exp(logit_scale)·cos.

mod text;
mod vision;

pub use text::{ClipText, TextOutput};
pub use vision::ClipVision;

use crate::error::{Error, Result};
use crate::nn::{BlockNames, Linear};
use crate::ops;
use crate::tensor::Tensor;
use crate::weights::{JsonConfig, VarBuilder};

use super::VisionOutput;

pub(crate) const NAMES: BlockNames = BlockNames {
    norm1: "layer_norm1",
    norm2: "layer_norm2",
    query: &["self_attn.q_proj"],
    key: &["self_attn.k_proj"],
    value: &["self_attn.v_proj"],
    out: &["self_attn.out_proj"],
    fc1: &["mlp.fc1"],
    fc2: &["mlp.fc2"],
    layer_scale: None,
};

pub struct Clip {
    pub vision: Option<ClipVision>,
    pub text: Option<ClipText>,
    /// log of the temperature; present in a full `CLIPModel`
    pub logit_scale: Option<f32>,
    /// a full `CLIPModel` returns unit-norm embeddings
    normalize: bool,
}

impl Clip {
    pub fn load(cfg: &JsonConfig, root: &VarBuilder, arch: &str) -> Result<Clip> {
        let full = arch == "CLIPModel";
        let with_vision = full || arch.starts_with("CLIPVision");
        let with_text = full || arch.starts_with("CLIPText");
        let projection = full || arch.ends_with("WithProjection");
        let vision = if with_vision {
            let vcfg = if full { cfg.sub("vision_config")? } else { cfg.clone() };
            let proj = if projection { Some(projection_layer(root, "visual_projection", &vcfg)?) } else { None };
            Some(ClipVision::load(&vcfg, &root.pp("vision_model"), proj)?)
        } else {
            None
        };
        let text = if with_text {
            let tcfg = if full { cfg.sub("text_config")? } else { cfg.clone() };
            let proj = if projection { Some(projection_layer(root, "text_projection", &tcfg)?) } else { None };
            Some(ClipText::load(&tcfg, &root.pp("text_model"), proj)?)
        } else {
            None
        };
        let logit_scale = if full { Some(root.on_cpu().get("logit_scale", &[])?.to_vec()?[0]) } else { None };
        Ok(Clip { vision, text, logit_scale, normalize: full })
    }

    pub fn forward_images(&self, pixels: &Tensor) -> Result<VisionOutput> {
        let vision =
            self.vision.as_ref().ok_or_else(|| Error::invalid("clip", "this checkpoint has no vision tower"))?;
        let mut out = vision.forward(pixels)?;
        if self.normalize {
            out.image_embeds = out.image_embeds.map(|e| ops::l2_normalize(&e)).transpose()?;
        }
        Ok(out)
    }

    /// Token ids (each starting with BOS and containing EOS) → `text_embeds` (unit-norm for a `CLIPModel`).
    pub fn forward_texts(&self, ids: &[Vec<u32>]) -> Result<TextOutput> {
        self.normalized(self.text_tower()?.forward(ids)?)
    }

    /// CoOp prompts: `forward_texts` with the learned context `ctx` in place of the token embeddings at
    /// `at..at + n` (`ClipText::forward_prompts`).
    pub fn forward_prompts(&self, ids: &[Vec<u32>], ctx: &Tensor, at: usize) -> Result<TextOutput> {
        self.normalized(self.text_tower()?.forward_prompts(ids, ctx, at)?)
    }

    fn text_tower(&self) -> Result<&ClipText> {
        self.text.as_ref().ok_or_else(|| Error::invalid("clip", "this checkpoint has no text tower"))
    }

    fn normalized(&self, mut out: TextOutput) -> Result<TextOutput> {
        if self.normalize {
            out.text_embeds = out.text_embeds.map(|e| ops::l2_normalize(&e)).transpose()?;
        }
        Ok(out)
    }

    /// exp(logit_scale) · image_embeds · text_embedsᵀ for unit-norm embeddings: `[images, texts]`.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Result<Tensor> {
        let scale = self.logit_scale.ok_or_else(|| Error::invalid("clip", "checkpoint has no logit_scale"))?;
        ops::scale(&ops::linear(image_embeds, text_embeds, ops::Epilogue::bias(None))?, scale.exp())
    }
}

/// A bias-free projection whose output size is read from the checkpoint (configs disagree on `projection_dim`).
fn projection_layer(root: &VarBuilder, name: &str, cfg: &JsonConfig) -> Result<Linear> {
    let d = cfg.usize("hidden_size")?;
    let out = match root.shape_of(&format!("{name}.weight")) {
        Some(shape) if shape.len() == 2 => shape[0],
        _ => {
            return Err(Error::MissingTensor {
                path: cfg.path().with_file_name("model.safetensors"),
                tensor: format!("{name}.weight"),
            })
        }
    };
    Linear::load(root, &[name], d, out, false)
}
