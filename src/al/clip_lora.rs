//! LoRA on both towers of a CLIPModel as the runner's method (`kind = "lora"` on a CLIP checkpoint), the paper's
//! other CLIP setting: fixed prompts "X X … X {class}.", LoRA on the blocks' projections, cosine logits. Each round
//! trains fresh factors on the CPU model; predictions run the adapted image tower on the device (merged into the
//! weights on a GPU) against the class embeddings of the adapted text tower.

use std::path::Path;
use std::sync::Arc;

use super::coop::PromptSettings;
use super::data::Dataset;
use super::learner::{AdaptedForward, Learner, Predicted};
use crate::adapters::{LoraAdapter, LoraConfig};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::tensor::Tensor;
use crate::tokenizer::ClipTokenizer;
use crate::train::clip_lora::ClipLora;
use crate::train::{self, TrainOptions};

pub struct ClipLoraLearner {
    /// The checkpoint on the CPU, where the factors train.
    model: Model,
    tokenizer: ClipTokenizer,
    settings: PromptSettings,
    config: LoraConfig,
    /// The last fit's adapter and its class embeddings `[C, D]`.
    fitted: Option<(LoraAdapter, Tensor)>,
    adapted: AdaptedForward,
}

impl ClipLoraLearner {
    /// `model` on the CPU, loaded from `model_dir`, and its `tokenizer` (`coop::check_model`). No head is trained:
    /// the classes are the prompts.
    #[allow(clippy::too_many_arguments)] // the runner's pieces, each used as is
    pub fn new(
        model: Model,
        model_dir: &Path,
        tokenizer: ClipTokenizer,
        settings: PromptSettings,
        config: LoraConfig,
        data: Arc<Dataset>,
        device: Device,
        batch: usize,
    ) -> ClipLoraLearner {
        let config = LoraConfig { modules_to_save: Vec::new(), ..config };
        let adapted = AdaptedForward::new(model_dir, data, device, batch);
        ClipLoraLearner { model, tokenizer, settings, config, fitted: None, adapted }
    }
}

impl Learner for ClipLoraLearner {
    fn fit(&mut self, rows: &[usize], labels: &[usize], opts: &TrainOptions, seed: u64) -> Result<()> {
        self.model.clear_adapters();
        self.fitted = None;
        self.adapted.reset();
        let mut adapter = LoraAdapter::fresh(&mut self.model, self.config.clone(), None, seed)?;
        adapter.attach(&mut self.model, false)?;
        let images = self.adapted.data().pixels(rows)?;
        let (classnames, placeholders) = (&self.settings.classnames, self.settings.n_ctx);
        let mut params = adapter.tensors.clone();
        let mut trainee = ClipLora::new(&mut self.model, &adapter, &self.tokenizer, classnames, placeholders, &images)?;
        train::train(&mut trainee, &mut params, labels, opts, |_| {})?;
        let prompts = trainee.prompts().to_vec();
        adapter.tensors = params;
        // The trained factors are in place on the CPU model (`ClipLora::finish`): its text tower gives the classes.
        let clip = self.model.clip().expect("checked by coop::check_model");
        let text = clip.forward_texts(&prompts)?.text_embeds;
        let text = text.ok_or_else(|| Error::invalid("clip lora", "the checkpoint has no text projection"))?;
        self.fitted = Some((adapter, text));
        Ok(())
    }

    fn predict(&mut self, rows: &[usize]) -> Result<Predicted> {
        let (adapter, text) = self.fitted.as_ref().ok_or_else(|| Error::invalid("clip lora", "predict before fit"))?;
        let images = self.adapted.forward(&self.model, adapter, rows)?;
        let features = Tensor::from_vec(images.features, &[rows.len(), images.dim])?;
        let clip = self.model.clip().expect("checked by coop::check_model");
        let logits = clip.logits_per_image(&features, text)?.to_vec()?;
        Ok(Predicted { logits, dim: images.dim, features: features.to_vec()? })
    }
}
