//! CoOp as the runner's method, the paper's own: a frozen CLIP, and learned context vectors in place of the
//! placeholders of "X X … X {class}.". The image embeddings of the pool and test rows are computed once
//! (`FrozenFeatures`, cached like the head's features); each round trains a fresh context on the labelled rows'
//! embeddings (only the text tower runs, on the CPU), then predicts every row by cosine against the class
//! embeddings the trained prompts give.

use std::path::Path;

use super::learner::{FrozenFeatures, Learner, Predicted};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::tensor::Tensor;
use crate::tokenizer::ClipTokenizer;
use crate::train::coop::{prompt_ids, CoopPrompts, CONTEXT};
use crate::train::{self, TrainOptions};

/// The class prompts "X X … X {class}." of the CLIP methods.
#[derive(Clone, Debug)]
pub struct PromptSettings {
    pub classnames: Vec<String>,
    /// Words before the class name: CoOp's learned context vectors, or CLIP-LoRA's plain "X"s.
    pub n_ctx: usize,
    /// CoOp: one context per class (the paper's), or one shared by all.
    pub class_specific: bool,
}

pub struct CoopLearner {
    /// The CLIP checkpoint on the CPU: its text tower trains the context.
    model: Model,
    tokenizer: ClipTokenizer,
    settings: PromptSettings,
    frozen: FrozenFeatures,
    /// The class embeddings `[C, D]` of the last fit's prompts.
    text_embeds: Option<Tensor>,
}

/// The tokenizer of `model_dir`, once `model` (loaded from there) is known to be a full CLIPModel and every class
/// name to make a prompt: before any image is encoded. `method` names what needs it in errors.
pub fn check_model(model: &Model, model_dir: &Path, settings: &PromptSettings, method: &str) -> Result<ClipTokenizer> {
    let where_ = model_dir.display().to_string();
    let clip = model.clip().ok_or_else(|| Error::invalid(&where_, format!("{method} needs a CLIP checkpoint")))?;
    if clip.text.is_none() || clip.vision.is_none() || clip.logit_scale.is_none() {
        let why = format!("{method} needs both towers and logit_scale: a full CLIPModel");
        return Err(Error::invalid(&where_, why));
    }
    let tokenizer = ClipTokenizer::from_dir(model_dir)?;
    prompt_ids(&tokenizer, &settings.classnames, settings.n_ctx)?;
    Ok(tokenizer)
}

impl CoopLearner {
    /// `model` on the CPU and its `tokenizer` (`check_model`), and the image embeddings of the pool and test rows.
    pub fn new(
        model: Model,
        tokenizer: ClipTokenizer,
        frozen: FrozenFeatures,
        settings: PromptSettings,
    ) -> CoopLearner {
        CoopLearner { model, tokenizer, settings, frozen, text_embeds: None }
    }

    fn prompts(&self, image_embeds: Tensor) -> Result<CoopPrompts<'_>> {
        let clip = self.model.clip().expect("checked in new");
        CoopPrompts::new(clip, &self.tokenizer, &self.settings.classnames, self.settings.n_ctx, image_embeds)
    }
}

impl Learner for CoopLearner {
    fn fit(&mut self, rows: &[usize], labels: &[usize], opts: &TrainOptions, seed: u64) -> Result<()> {
        self.text_embeds = None;
        let mut prompts = self.prompts(self.frozen.gather(rows)?)?;
        let ctx = prompts.fresh_context(self.settings.class_specific, seed)?;
        let mut params = vec![(CONTEXT.to_string(), ctx)];
        train::train(&mut prompts, &mut params, labels, opts, |_| {})?;
        let text = prompts.text_embeds(&params[0].1)?;
        self.text_embeds = Some(text);
        Ok(())
    }

    fn predict(&mut self, rows: &[usize]) -> Result<Predicted> {
        let text = self.text_embeds.as_ref().ok_or_else(|| Error::invalid("coop", "predict before fit"))?;
        let features = self.frozen.gather(rows)?;
        let clip = self.model.clip().expect("checked in new");
        let logits = clip.logits_per_image(&features, text)?.to_vec()?;
        Ok(Predicted { logits, dim: self.frozen.dim(), features: features.to_vec()? })
    }
}
