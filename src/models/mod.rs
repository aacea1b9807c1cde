//! Hugging Face vision(-language) transformers, one file per architecture, loaded from a checkpoint directory
//! by `config.json`'s `model_type` / `architectures`.

pub mod clip;
pub mod dinov2;
pub mod flops;
pub mod presets;
pub mod vit;

use std::path::Path;

use crate::error::{Error, Result};
use crate::nn::LoraSite;
use crate::tensor::Tensor;
use crate::weights::{Checkpoint, JsonConfig, VarBuilder};

/// What an image forward returns; names and shapes as transformers.
pub struct VisionOutput {
    /// `[B, T, D]`
    pub last_hidden_state: Tensor,
    /// `[B, D]` (ViT pooler, DINOv2 CLS after the final norm, CLIP post-LN CLS)
    pub pooler_output: Option<Tensor>,
    /// `[B, P]` CLIP projected embeddings (unit-normalised for a full `CLIPModel`, as transformers)
    pub image_embeds: Option<Tensor>,
    /// `[B, classes]` for `…ForImageClassification` checkpoints
    pub logits: Option<Tensor>,
}

impl VisionOutput {
    /// The outputs present, under transformers' names (what `cpeal embed --input` writes).
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let optional =
            [("pooler_output", &self.pooler_output), ("image_embeds", &self.image_embeds), ("logits", &self.logits)];
        std::iter::once(("last_hidden_state", &self.last_hidden_state))
            .chain(optional.into_iter().filter_map(|(name, t)| t.as_ref().map(|t| (name, t))))
            .collect()
    }

    /// One output by its transformers name, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.named().into_iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    /// The one vector per image that `cpeal embed --images` writes: projected embeds, else the pooler, else CLS.
    pub fn pooled(&self) -> Result<Tensor> {
        if let Some(t) = self.image_embeds.as_ref().or(self.pooler_output.as_ref()) {
            return Ok(t.clone());
        }
        self.pooled_cls()
    }

    /// The CLS token of the last hidden state, `[B, D]`.
    pub fn pooled_cls(&self) -> Result<Tensor> {
        let b = self.last_hidden_state.shape()[0];
        crate::ops::select_rows(&self.last_hidden_state, &vec![0; b])
    }
}

/// A model's two transformer stacks (only CLIP has a text one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tower {
    Vision,
    Text,
}

#[allow(clippy::large_enum_variant)] // one per process; boxing buys nothing
pub enum Model {
    Vit(vit::Vit),
    Dinov2(dinov2::Dinov2),
    Clip(clip::Clip),
}

pub const SUPPORTED: &str = "ViTModel, ViTForImageClassification, Dinov2Model, Dinov2ForImageClassification, \
Dinov2WithRegistersModel, Dinov2WithRegistersForImageClassification, CLIPModel, CLIPVisionModel, CLIPVisionModelWithProjection, CLIPTextModel, CLIPTextModelWithProjection";

impl Model {
    /// Load `dir/config.json` + weights; the architecture comes from `architectures[0]` (or `model_type`).
    pub fn load(dir: &Path) -> Result<Model> {
        Model::load_on(dir, &crate::Device::Cpu)
    }

    /// Load with every weight uploaded to `device` (bf16 on a GPU).
    pub fn load_on(dir: &Path, device: &crate::Device) -> Result<Model> {
        Model::from_checkpoint(Checkpoint::open(dir)?, dir, device)
    }

    /// The model of `dir/config.json` over the tensors of `ckpt`, uploaded to `device`.
    fn from_checkpoint(ckpt: Checkpoint, dir: &Path, device: &crate::Device) -> Result<Model> {
        let config = JsonConfig::read(&dir.join("config.json"))?;
        let arch = architecture(&config)?;
        let vb = ckpt.var_builder_on(device);
        Ok(match arch.as_str() {
            "ViTModel" | "ViTForImageClassification" => Model::Vit(vit::Vit::load(&config, &vb)?),
            "Dinov2Model"
            | "Dinov2ForImageClassification"
            | "Dinov2WithRegistersModel"
            | "Dinov2WithRegistersForImageClassification" => Model::Dinov2(dinov2::Dinov2::load(&config, &vb)?),
            "CLIPModel"
            | "CLIPVisionModel"
            | "CLIPVisionModelWithProjection"
            | "CLIPTextModel"
            | "CLIPTextModelWithProjection" => Model::Clip(clip::Clip::load(&config, &vb, &arch)?),
            other => {
                return Err(Error::UnknownArchitecture {
                    path: config.path().to_path_buf(),
                    arch: other.to_string(),
                    supported: SUPPORTED.to_string(),
                })
            }
        })
    }

    /// pixel_values `[B, 3, H, W]` (already normalised) → outputs.
    pub fn forward_images(&self, pixels: &Tensor) -> Result<VisionOutput> {
        match self {
            Model::Vit(m) => m.forward(pixels),
            Model::Dinov2(m) => m.forward(pixels),
            Model::Clip(m) => m.forward_images(pixels),
        }
    }

    pub fn clip(&self) -> Option<&clip::Clip> {
        match self {
            Model::Clip(c) => Some(c),
            _ => None,
        }
    }

    /// The transformer blocks of one tower (`None` when the checkpoint has no such tower).
    pub fn encoder_mut(&mut self, tower: Tower) -> Option<&mut crate::nn::Encoder> {
        match (self, tower) {
            (Model::Vit(m), Tower::Vision) => Some(&mut m.encoder),
            (Model::Dinov2(m), Tower::Vision) => Some(&mut m.encoder),
            (Model::Clip(c), Tower::Vision) => c.vision.as_mut().map(|v| &mut v.encoder),
            (Model::Clip(c), Tower::Text) => c.text.as_mut().map(|t| &mut t.encoder),
            (_, Tower::Text) => None,
        }
    }

    /// The width of the pooled features an image classification head reads (ViT: D; DINOv2: 2·D).
    pub fn pooled_features(&self) -> Result<usize> {
        match self {
            Model::Vit(m) => Ok(m.encoder_config.hidden),
            Model::Dinov2(m) => Ok(2 * m.encoder_config.hidden),
            Model::Clip(_) => Err(Error::invalid("classifier", "CLIP has no classification head")),
        }
    }

    /// The module path peft gives `site` of block `layer` in `tower` (current transformers names). With
    /// `with_head` the model class is the one with a classification head (peft wraps that to train a head).
    pub fn peft_module(&self, tower: Tower, layer: usize, site: LoraSite, with_head: bool) -> Result<String> {
        let class = |name: &str| if with_head { format!("{name}.") } else { String::new() };
        Ok(match (self, tower) {
            (Model::Vit(_), Tower::Vision) => {
                format!("{}encoder.layer.{layer}.{}", class("vit"), vit::NAMES.current(site))
            }
            (Model::Dinov2(m), Tower::Vision) => {
                let base = if m.registers > 0 { "dinov2_with_registers" } else { "dinov2" };
                format!("{}encoder.layer.{layer}.{}", class(base), dinov2::NAMES.current(site))
            }
            (Model::Clip(_), Tower::Vision) => {
                format!("vision_model.encoder.layers.{layer}.{}", clip::NAMES.current(site))
            }
            (Model::Clip(_), Tower::Text) => format!("text_model.encoder.layers.{layer}.{}", clip::NAMES.current(site)),
            (_, Tower::Text) => return Err(Error::invalid("LoRA", "this model has no text tower")),
        })
    }

    /// The adapter placed on this (CPU) model, merged: each adapted weight as W + scale·B·A under its checkpoint
    /// name, and the classifier as `classifier.weight` / `.bias`, ready to override the checkpoint's tensors.
    pub fn merged_weights(&mut self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for tower in [Tower::Vision, Tower::Text] {
            if let Some(encoder) = self.encoder_mut(tower) {
                out.extend(encoder.merged_weights()?);
            }
        }
        let classifier = match self {
            Model::Vit(m) => m.classifier.as_ref(),
            Model::Dinov2(m) => m.classifier.as_ref(),
            Model::Clip(_) => None,
        };
        if let Some(c) = classifier {
            out.push(("classifier.weight".to_string(), c.weight.detach()));
            out.extend(c.bias.as_ref().map(|b| ("classifier.bias".to_string(), b.detach())));
        }
        Ok(out)
    }

    /// The checkpoint in `dir` with `adapter` merged into its weights, loaded on `device`: an adapted model at
    /// the speed of a plain one, on any device.
    pub fn load_merged(dir: &Path, device: &crate::Device, adapter: &crate::adapters::LoraAdapter) -> Result<Model> {
        let mut cpu = Model::load(dir)?;
        adapter.attach(&mut cpu, false)?;
        let merged = cpu.merged_weights()?;
        Model::from_checkpoint(Checkpoint::open(dir)?.with_overrides(merged), dir, device)
    }

    /// Removes every LoRA term from both towers (before placing an adapter's updated tensors).
    pub fn clear_adapters(&mut self) {
        for tower in [Tower::Vision, Tower::Text] {
            if let Some(encoder) = self.encoder_mut(tower) {
                encoder.clear_lora();
            }
        }
    }

    /// The features the image classification head reads, from a forward's output (ViT: CLS; DINOv2:
    /// concat(CLS, mean of patch tokens)): `[B, pooled_features()]`.
    pub fn head_input(&self, out: &VisionOutput) -> Result<Tensor> {
        match self {
            Model::Vit(_) => out.pooled_cls(),
            Model::Dinov2(m) => m.head_input(&out.last_hidden_state),
            Model::Clip(_) => Err(Error::invalid("classifier", "CLIP has no classification head")),
        }
    }

    /// What a linear probe, CoOp's cosine logits or a feature-based strategy reads from an image: the
    /// classification head's input (ViT, DINOv2; `head_input`), or CLIP's image embedding (unit-norm for a
    /// `CLIPModel`): `[B, image_feature_dim()]`.
    pub fn image_features(&self, out: &VisionOutput) -> Result<Tensor> {
        match self {
            Model::Clip(_) => out
                .image_embeds
                .clone()
                .ok_or_else(|| Error::invalid("clip", "the checkpoint has no visual projection (image_embeds)")),
            _ => self.head_input(out),
        }
    }

    /// The width of `image_features`.
    pub fn image_feature_dim(&self) -> Result<usize> {
        match self {
            Model::Clip(c) => {
                c.vision.as_ref().and_then(|v| v.projection_dim()).ok_or_else(|| {
                    Error::invalid("clip", "the checkpoint has no vision tower with a visual projection")
                })
            }
            _ => self.pooled_features(),
        }
    }

    /// Replaces (or adds) the image classification head: `[num_labels, in]` over the architecture's pooled
    /// features (ViT: CLS; DINOv2: concat(CLS, mean of patch tokens)).
    pub fn set_classifier(&mut self, weight: Tensor, bias: Option<Tensor>) -> Result<()> {
        let in_dim = self.pooled_features()?;
        let slot = match self {
            Model::Vit(m) => &mut m.classifier,
            Model::Dinov2(m) => &mut m.classifier,
            Model::Clip(_) => unreachable!("pooled_features refuses CLIP"),
        };
        let [labels, k] = weight.dims::<2>("classifier")?;
        if k != in_dim || bias.as_ref().is_some_and(|b| b.shape() != [labels]) {
            let bias_shape = bias.as_ref().map(|b| b.shape().to_vec());
            let why = format!("weight {:?} and bias {bias_shape:?} for {in_dim} pooled features", weight.shape());
            return Err(Error::shape("classifier", why));
        }
        *slot = Some(crate::nn::Linear::new(weight, bias));
        Ok(())
    }

    /// Whether the image encoder runs with its LayerNorms folded into the GEMMs (`CPEAL_LN_FOLD=on` on a GPU).
    pub fn folds_layer_norms(&self) -> bool {
        match self {
            Model::Vit(m) => m.encoder.folds_layer_norms(),
            Model::Dinov2(m) => m.encoder.folds_layer_norms(),
            Model::Clip(c) => c.vision.as_ref().is_some_and(|v| v.encoder.folds_layer_norms()),
        }
    }

    /// `model_type` of the vision tower, for default preprocessing.
    pub fn vision_model_type(&self) -> &'static str {
        match self {
            Model::Vit(_) => "vit",
            Model::Dinov2(_) => "dinov2",
            Model::Clip(_) => "clip",
        }
    }

    /// The square input size the checkpoint was trained at (`image_size`), if it has a vision tower.
    pub fn image_size(&self) -> Option<usize> {
        match self {
            Model::Vit(m) => Some(m.image_size),
            Model::Dinov2(m) => Some(m.image_size),
            Model::Clip(m) => m.vision.as_ref().map(|v| v.image_size),
        }
    }
}

/// `architectures[0]`, or a default from `model_type` when the list is absent.
pub fn architecture(config: &JsonConfig) -> Result<String> {
    if let Some(a) = config.first_str("architectures") {
        return Ok(a.to_string());
    }
    let model_type = config.str("model_type")?;
    Ok(match model_type {
        "vit" => "ViTModel",
        "dinov2" => "Dinov2Model",
        "dinov2_with_registers" => "Dinov2WithRegistersModel",
        "clip" => "CLIPModel",
        "clip_vision_model" => "CLIPVisionModel",
        "clip_text_model" => "CLIPTextModel",
        other => {
            return Err(Error::UnknownArchitecture {
                path: config.path().to_path_buf(),
                arch: format!("model_type {other}"),
                supported: SUPPORTED.to_string(),
            })
        }
    }
    .to_string())
}

/// The encoder fields every transformers vision/text config names the same way; the architecture supplies the
/// feed-forward width and its defaults for `layer_norm_eps` and `hidden_act`.
pub(crate) fn encoder_config(
    cfg: &JsonConfig,
    intermediate: usize,
    default_eps: f64,
    default_act: &str,
    causal: bool,
) -> Result<crate::nn::EncoderConfig> {
    Ok(crate::nn::EncoderConfig {
        hidden: cfg.usize("hidden_size")?,
        intermediate,
        layers: cfg.usize("num_hidden_layers")?,
        heads: cfg.usize("num_attention_heads")?,
        eps: cfg.f64_or("layer_norm_eps", default_eps)?,
        activation: activation(cfg, default_act)?,
        qkv_bias: cfg.bool_or("qkv_bias", true)?,
        causal,
        f32_stream: false,
    })
}

/// Patch embeddings stored as ViT and DINOv2 store them (`embeddings.patch_embeddings.projection`,
/// `cls_token`, `position_embeddings`), for a square `image_size`.
pub(crate) fn vit_style_embeddings(cfg: &JsonConfig, vb: &VarBuilder) -> Result<crate::nn::PatchEmbeddings> {
    let d = cfg.usize("hidden_size")?;
    let (p, c, image_size) = (cfg.usize("patch_size")?, cfg.usize_or("num_channels", 3)?, cfg.usize("image_size")?);
    let grid = image_size / p.max(1);
    let emb = vb.pp("embeddings");
    let projection = emb.pp("patch_embeddings").pp("projection");
    crate::nn::PatchEmbeddings::new(
        projection.get("weight", &[d, c, p, p])?,
        Some(projection.get("bias", &[d])?),
        emb.get("cls_token", &[1, 1, d])?,
        emb.get("position_embeddings", &[1, grid * grid + 1, d])?,
    )
}

/// `hidden_act` of a config as an activation, with an error naming the field when unknown.
pub(crate) fn activation(config: &JsonConfig, default: &str) -> Result<crate::ops::Activation> {
    let name = config.str_or("hidden_act", default)?;
    crate::ops::Activation::from_hf(name)
        .ok_or_else(|| Error::field(config.path(), "hidden_act", format!("unsupported activation `{name}`")))
}
