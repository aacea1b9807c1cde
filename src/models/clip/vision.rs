//! CLIP's vision tower: bias-free patch projection, class embedding, `pre_layrnorm` (sic, as in the
//! checkpoints), encoder, `post_layernorm` on the class token, optional `visual_projection`.

use crate::error::Result;
use crate::models::VisionOutput;
use crate::nn::{Encoder, EncoderConfig, LayerNorm, Linear, PatchEmbeddings};
use crate::ops;
use crate::tensor::Tensor;
use crate::weights::{JsonConfig, VarBuilder};

pub struct ClipVision {
    pub image_size: usize,
    pub encoder_config: EncoderConfig,
    embeddings: PatchEmbeddings,
    pre_norm: LayerNorm,
    pub(crate) encoder: Encoder,
    post_norm: LayerNorm,
    projection: Option<Linear>,
}

impl ClipVision {
    pub fn load(cfg: &JsonConfig, vb: &VarBuilder, projection: Option<Linear>) -> Result<ClipVision> {
        let d = cfg.usize("hidden_size")?;
        let (p, c, image_size) = (cfg.usize("patch_size")?, cfg.usize_or("num_channels", 3)?, cfg.usize("image_size")?);
        let grid = image_size / p;
        let encoder_config =
            crate::models::encoder_config(cfg, cfg.usize("intermediate_size")?, 1e-5, "quick_gelu", false)?;
        let emb = vb.pp("embeddings");
        let embeddings = PatchEmbeddings::new(
            emb.get("patch_embedding.weight", &[d, c, p, p])?,
            None,
            emb.get("class_embedding", &[d])?,
            emb.get("position_embedding.weight", &[grid * grid + 1, d])?,
        )?;
        Ok(ClipVision {
            image_size,
            pre_norm: LayerNorm::load(vb, "pre_layrnorm", d, encoder_config.eps)?,
            encoder: Encoder::load(&vb.pp("encoder").pp("layers"), encoder_config.clone(), &super::NAMES)?,
            post_norm: LayerNorm::load(vb, "post_layernorm", d, encoder_config.eps)?,
            encoder_config,
            embeddings,
            projection,
        })
    }

    /// The width of `image_embeds`, when the tower has a projection.
    pub fn projection_dim(&self) -> Option<usize> {
        self.projection.as_ref().map(|p| p.weight.shape()[0])
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<VisionOutput> {
        let tokens = self.pre_norm.forward(&self.embeddings.forward(pixels)?)?;
        let last_hidden_state = self.encoder.forward(tokens)?;
        let cls = ops::select_rows(&last_hidden_state, &vec![0; last_hidden_state.shape()[0]])?;
        let pooled = self.post_norm.forward(&cls)?;
        let image_embeds = self.projection.as_ref().map(|p| p.forward(&pooled)).transpose()?;
        Ok(VisionOutput { last_hidden_state, pooler_output: Some(pooled), image_embeds, logits: None })
    }
}
