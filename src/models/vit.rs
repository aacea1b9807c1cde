//! ViT (Dosovitskiy et al. 2020) as transformers' `ViTModel` / `ViTForImageClassification`
//! (google/vit-base-patch16-224 and friends): pre-LN blocks, GELU, final LayerNorm, optional tanh pooler over
//! CLS, optional classifier over CLS.

use crate::error::Result;
use crate::nn::{BlockNames, Encoder, EncoderConfig, LayerNorm, Linear, PatchEmbeddings};
use crate::ops::{self, Activation};
use crate::tensor::Tensor;
use crate::weights::{JsonConfig, VarBuilder};

use super::VisionOutput;

pub(crate) const NAMES: BlockNames = BlockNames {
    norm1: "layernorm_before",
    norm2: "layernorm_after",
    query: &["attention.attention.query", "attention.q_proj"],
    key: &["attention.attention.key", "attention.k_proj"],
    value: &["attention.attention.value", "attention.v_proj"],
    out: &["attention.output.dense", "attention.o_proj"],
    fc1: &["intermediate.dense", "mlp.fc1"],
    fc2: &["output.dense", "mlp.fc2"],
    layer_scale: None,
};

pub struct Vit {
    pub image_size: usize,
    pub encoder_config: EncoderConfig,
    embeddings: PatchEmbeddings,
    pub(crate) encoder: Encoder,
    norm: LayerNorm,
    pooler: Option<Linear>,
    pub(crate) classifier: Option<Linear>,
}

impl Vit {
    pub fn load(cfg: &JsonConfig, root: &VarBuilder) -> Result<Vit> {
        let vb = if root.contains("vit.embeddings.cls_token") { root.pp("vit") } else { root.clone() };
        let d = cfg.usize("hidden_size")?;
        let image_size = cfg.usize("image_size")?;
        let encoder_config = super::encoder_config(cfg, cfg.usize("intermediate_size")?, 1e-12, "gelu", false)?;
        let embeddings = super::vit_style_embeddings(cfg, &vb)?;
        let encoder = Encoder::load(&vb.pp("encoder").pp("layer"), encoder_config.clone(), &NAMES)?;
        let norm = LayerNorm::load(&vb, "layernorm", d, encoder_config.eps)?;
        let pooler_dim = cfg.usize_or("pooler_output_size", d)?;
        let pooler = if vb.contains("pooler.dense.weight") {
            Some(Linear::load(&vb.pp("pooler"), &["dense"], d, pooler_dim, true)?)
        } else {
            None
        };
        let classifier = classifier(root, d)?;
        Ok(Vit { image_size, encoder_config, embeddings, encoder, norm, pooler, classifier })
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<VisionOutput> {
        let hidden = self.encoder.forward(self.embeddings.forward(pixels)?)?;
        let last_hidden_state = self.norm.forward(&hidden)?;
        let cls = ops::select_rows(&last_hidden_state, &vec![0; last_hidden_state.shape()[0]])?;
        let pooler_output = match &self.pooler {
            Some(p) => Some(p.forward_with(&cls, |e| e.with_activation(Activation::Tanh))?),
            None => None,
        };
        let logits = self.classifier.as_ref().map(|c| c.forward(&cls)).transpose()?;
        Ok(VisionOutput { last_hidden_state, pooler_output, image_embeds: None, logits })
    }
}

/// `classifier.{weight,bias}` `[classes, in]` when the checkpoint has one.
pub(super) fn classifier(root: &VarBuilder, in_dim: usize) -> Result<Option<Linear>> {
    let Some(shape) = root.shape_of("classifier.weight") else {
        return Ok(None);
    };
    let classes = shape.first().copied().unwrap_or(0);
    Linear::load(root, &["classifier"], in_dim, classes, true).map(Some)
}
