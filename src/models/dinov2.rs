//! DINOv2 (Oquab et al. 2023) as transformers' `Dinov2Model` / `Dinov2ForImageClassification`
//! (facebook/dinov2-small … -giant): pre-LN blocks with layer scale, position embeddings resampled bicubically
//! for any input size, pooler = CLS after the final LayerNorm, classifier over concat(CLS, mean of patches).
//! Also `Dinov2WithRegistersModel` / `…ForImageClassification` (Darcet et al. 2024, facebook/dinov2-with-
//! registers-*): R register tokens after the class token, and antialiased resampling of the positions.

use crate::error::{Error, Result};
use crate::nn::{BlockNames, Encoder, EncoderConfig, LayerNorm, Linear, PatchEmbeddings};
use crate::ops;
use crate::tensor::Tensor;
use crate::weights::{JsonConfig, VarBuilder};

use super::VisionOutput;

pub(crate) const NAMES: BlockNames = BlockNames {
    norm1: "norm1",
    norm2: "norm2",
    query: &["attention.attention.query", "attention.q_proj"],
    key: &["attention.attention.key", "attention.k_proj"],
    value: &["attention.attention.value", "attention.v_proj"],
    out: &["attention.output.dense", "attention.o_proj"],
    fc1: &["mlp.fc1"],
    fc2: &["mlp.fc2"],
    layer_scale: Some(("layer_scale1.lambda1", "layer_scale2.lambda1")),
};

pub struct Dinov2 {
    pub image_size: usize,
    pub encoder_config: EncoderConfig,
    embeddings: PatchEmbeddings,
    pub(crate) encoder: Encoder,
    norm: LayerNorm,
    pub(crate) classifier: Option<Linear>,
    /// Register tokens between the class token and the patches (0 for plain DINOv2).
    pub registers: usize,
}

impl Dinov2 {
    pub fn load(cfg: &JsonConfig, root: &VarBuilder) -> Result<Dinov2> {
        if cfg.bool_or("use_swiglu_ffn", false)? {
            return Err(Error::field(
                cfg.path(),
                "use_swiglu_ffn",
                "SwiGLU feed-forward (dinov2-giant) is not supported",
            ));
        }
        let prefix = ["dinov2", "dinov2_with_registers"]
            .into_iter()
            .find(|p| root.contains(&format!("{p}.embeddings.cls_token")));
        let vb = prefix.map_or_else(|| root.clone(), |p| root.pp(p));
        let d = cfg.usize("hidden_size")?;
        let registers = if cfg.str_or("model_type", "dinov2")? == "dinov2_with_registers" {
            cfg.usize("num_register_tokens")?
        } else {
            0
        };
        let image_size = cfg.usize("image_size")?;
        let intermediate = (d as f64 * cfg.f64_or("mlp_ratio", 4.0)?) as usize;
        let encoder_config = super::encoder_config(cfg, intermediate, 1e-6, "gelu", false)?;
        let mut embeddings = super::vit_style_embeddings(cfg, &vb)?;
        if registers > 0 {
            embeddings = embeddings.with_registers(vb.pp("embeddings").get("register_tokens", &[1, registers, d])?)?;
        }
        let encoder = Encoder::load(&vb.pp("encoder").pp("layer"), encoder_config.clone(), &NAMES)?;
        let norm = LayerNorm::load(&vb, "layernorm", d, encoder_config.eps)?;
        let classifier = super::vit::classifier(root, 2 * d)?;
        Ok(Dinov2 { image_size, encoder_config, embeddings, encoder, norm, classifier, registers })
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<VisionOutput> {
        let hidden = self.encoder.forward(self.embeddings.forward(pixels)?)?;
        let last_hidden_state = self.norm.forward(&hidden)?;
        let cls = ops::select_rows(&last_hidden_state, &vec![0; last_hidden_state.shape()[0]])?;
        let logits = match &self.classifier {
            Some(c) => Some(c.forward(&self.head_input(&last_hidden_state)?)?),
            None => None,
        };
        Ok(VisionOutput { last_hidden_state, pooler_output: Some(cls), image_embeds: None, logits })
    }

    /// What the classifier reads: concat(CLS, mean of the patch tokens) of the normed hidden states `[B, 2·D]`.
    pub fn head_input(&self, last_hidden_state: &Tensor) -> Result<Tensor> {
        let cls = ops::select_rows(last_hidden_state, &vec![0; last_hidden_state.shape()[0]])?;
        ops::concat_last(&cls, &ops::mean_tokens(last_hidden_state, 1 + self.registers)?)
    }
}
