//! CoOp (Zhou et al. 2022), as the paper's CLIP method: learned context vectors take the place of the
//! placeholder words of "X X … X {class}.", and an image's logits are exp(logit_scale)·cos(image, prompt).
//! The image tower is frozen, so every training image is encoded once, before training; each step runs only
//! the text tower (C prompts) and the cosine logits of the batch.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::adapters::init::standard_normal;
use crate::error::{Error, Result};
use crate::models::clip::Clip;
use crate::tensor::Tensor;
use crate::tokenizer::ClipTokenizer;
use crate::Device;

use super::{gather_rows, Trainee};

pub use crate::adapters::coop::CONTEXT;

/// The prompts of every class and the training images' embeddings.
pub struct CoopPrompts<'a> {
    clip: &'a Clip,
    prompts: Vec<Vec<u32>>,
    n_ctx: usize,
    image_embeds: Tensor,
}

impl<'a> CoopPrompts<'a> {
    /// `image_embeds` `[N, D]`: the unit-norm embeddings of the training images (`encode_images`).
    pub fn new(
        clip: &'a Clip,
        tokenizer: &ClipTokenizer,
        classnames: &[String],
        n_ctx: usize,
        image_embeds: Tensor,
    ) -> Result<CoopPrompts<'a>> {
        let prompts = prompt_ids(tokenizer, classnames, n_ctx)?;
        Ok(CoopPrompts { clip, prompts, n_ctx, image_embeds })
    }

    /// The token ids of each class's prompt.
    pub fn prompts(&self) -> &[Vec<u32>] {
        &self.prompts
    }

    /// The class embeddings `[C, D]` of the prompts with context `ctx` in place of the placeholders.
    pub fn text_embeds(&self, ctx: &Tensor) -> Result<Tensor> {
        let text = self.clip.forward_prompts(&self.prompts, ctx, 1)?.text_embeds;
        text.ok_or_else(|| Error::invalid("coop", "the CLIP checkpoint has no text projection"))
    }

    /// A new context as CoOp initialises one: N(0, 0.02), `[C, n_ctx, D]` class-specific or `[n_ctx, D]`.
    pub fn fresh_context(&self, class_specific: bool, seed: u64) -> Result<Tensor> {
        let d = self.clip.text.as_ref().map(|t| t.encoder_config.hidden).unwrap_or(0);
        let shape: Vec<usize> =
            if class_specific { vec![self.prompts.len(), self.n_ctx, d] } else { vec![self.n_ctx, d] };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Tensor::from_vec((0..shape.iter().product()).map(|_| 0.02 * standard_normal(&mut rng)).collect(), &shape)
    }
}

impl Trainee for CoopPrompts<'_> {
    fn logits(&mut self, params: &[(String, Tensor)], rows: &[usize], _step: usize) -> Result<Tensor> {
        let text = self.text_embeds(context(params)?)?;
        self.clip.logits_per_image(&gather_rows(&self.image_embeds, rows)?, &text)
    }

    fn finish(&mut self, _params: &[(String, Tensor)]) -> Result<()> {
        Ok(())
    }
}

/// The token ids of "X X … X {class}." for each class (`n_ctx` placeholders, whose embeddings the context
/// replaces: tokens 1..=n_ctx).
pub fn prompt_ids(tokenizer: &ClipTokenizer, classnames: &[String], n_ctx: usize) -> Result<Vec<Vec<u32>>> {
    let placeholders = vec!["X"; n_ctx].join(" ");
    let texts: Vec<String> = classnames.iter().map(|c| format!("{placeholders} {c}.")).collect();
    let prompts = tokenizer.encode_batch(&texts)?;
    // Each placeholder must be one token.
    if let Some((class, _)) =
        prompts.iter().enumerate().find(|(_, p)| p.len() < n_ctx + 2 || p[1..=n_ctx].iter().any(|&t| t != p[1]))
    {
        let why = format!("the prompt of class `{}` does not start with {n_ctx} placeholders", classnames[class]);
        return Err(Error::invalid("coop", why));
    }
    Ok(prompts)
}

fn context(params: &[(String, Tensor)]) -> Result<&Tensor> {
    params
        .iter()
        .find(|(name, _)| name == CONTEXT)
        .map(|(_, t)| t)
        .ok_or_else(|| Error::invalid("coop", format!("no `{CONTEXT}` among the trained tensors")))
}

/// The unit-norm image embeddings of `images` `[N, 3, H, W]` (on the CPU), `batch_size` at a time on `device`
/// (where `clip` lives), brought back to the CPU.
pub fn encode_images(clip: &Clip, images: &Tensor, batch_size: usize, device: &Device) -> Result<Tensor> {
    let n = images.shape()[0];
    let mut parts = Vec::new();
    let mut d = 0;
    for start in (0..n).step_by(batch_size.max(1)) {
        let rows: Vec<usize> = (start..n.min(start + batch_size.max(1))).collect();
        let embeds = clip.forward_images(&gather_rows(images, &rows)?.to_device(device)?)?.image_embeds;
        let embeds = embeds.ok_or_else(|| Error::invalid("coop", "the CLIP checkpoint has no visual projection"))?;
        d = embeds.last_dim();
        parts.extend(embeds.to_vec()?);
    }
    Tensor::from_vec(parts, &[n, d])
}
