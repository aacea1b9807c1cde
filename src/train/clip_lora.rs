//! LoRA on CLIP, the paper's other CLIP method: LoRA on both towers, and fixed prompts "X X … X {class}." (the
//! placeholders are plain tokens here: no learned context). Each step runs the image tower on the batch and the
//! text tower on every class's prompt, both through their LoRA terms, and takes exp(logit_scale)·cos.

use crate::adapters::LoraAdapter;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::tensor::Tensor;
use crate::tokenizer::ClipTokenizer;

use super::{gather_rows, Trainee};

pub struct ClipLora<'a> {
    pub model: &'a mut Model,
    pub adapter: &'a LoraAdapter,
    prompts: Vec<Vec<u32>>,
    images: &'a Tensor,
}

impl<'a> ClipLora<'a> {
    /// `placeholders` "X" words before each class name, as the reference code's prompts.
    pub fn new(
        model: &'a mut Model,
        adapter: &'a LoraAdapter,
        tokenizer: &ClipTokenizer,
        classnames: &[String],
        placeholders: usize,
        images: &'a Tensor,
    ) -> Result<ClipLora<'a>> {
        if model.clip().is_none() {
            return Err(Error::invalid("clip lora", "the model is not a CLIP checkpoint"));
        }
        let prompts = fixed_prompt_ids(tokenizer, classnames, placeholders)?;
        Ok(ClipLora { model, adapter, prompts, images })
    }

    /// The token ids of each class's prompt.
    pub fn prompts(&self) -> &[Vec<u32>] {
        &self.prompts
    }
}

/// The token ids of "X X … X {class}." for each class, with `placeholders` plain "X" words.
pub fn fixed_prompt_ids(
    tokenizer: &ClipTokenizer,
    classnames: &[String],
    placeholders: usize,
) -> Result<Vec<Vec<u32>>> {
    let prefix = vec!["X"; placeholders].join(" ");
    let texts: Vec<String> = classnames.iter().map(|c| format!("{prefix} {c}.").trim_start().to_string()).collect();
    tokenizer.encode_batch(&texts)
}

impl Trainee for ClipLora<'_> {
    fn logits(&mut self, params: &[(String, Tensor)], rows: &[usize], step: usize) -> Result<Tensor> {
        self.model.clear_adapters();
        self.adapter.place(self.model, params, Some(step as u64))?;
        let clip = self.model.clip().expect("checked at construction");
        let missing = || Error::invalid("clip lora", "the CLIP checkpoint lacks a projection");
        let images = clip.forward_images(&gather_rows(self.images, rows)?)?.image_embeds.ok_or_else(missing)?;
        let text = clip.forward_texts(&self.prompts)?.text_embeds.ok_or_else(missing)?;
        clip.logits_per_image(&images, &text)
    }

    fn finish(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        self.model.clear_adapters();
        self.adapter.place(self.model, params, None)
    }
}
