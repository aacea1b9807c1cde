//! CLIP's text tower: token + position embeddings, causal encoder, `final_layer_norm`, pooling at the first
//! end-of-text token, optional `text_projection`. Its residual stream is f32 on every device.

use crate::error::{Error, Result};
use crate::gpu::DType;
use crate::nn::{Encoder, EncoderConfig, LayerNorm, Linear};
use crate::ops;
use crate::tensor::Tensor;
use crate::weights::{JsonConfig, VarBuilder};

pub struct ClipText {
    pub eos_token_id: u32,
    pub context_length: usize,
    pub encoder_config: EncoderConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    pub(crate) encoder: Encoder,
    final_norm: LayerNorm,
    projection: Option<Linear>,
}

/// The `eos_token_id` of OpenAI's CLIP configs (see `ClipText::pool_position`).
const LEGACY_EOS_TOKEN_ID: u32 = 2;

pub struct TextOutput {
    /// `[B, T, D]` (T = longest sequence; shorter ones are padded with end-of-text after their end)
    pub last_hidden_state: Tensor,
    /// `[B, D]` at each sequence's first end-of-text token
    pub pooler_output: Tensor,
    pub text_embeds: Option<Tensor>,
}

impl ClipText {
    pub fn load(cfg: &JsonConfig, vb: &VarBuilder, projection: Option<Linear>) -> Result<ClipText> {
        let d = cfg.usize("hidden_size")?;
        let (vocab, context_length) = (cfg.usize("vocab_size")?, cfg.usize_or("max_position_embeddings", 77)?);
        let encoder_config =
            crate::models::encoder_config(cfg, cfg.usize("intermediate_size")?, 1e-5, "quick_gelu", true)?;
        // The residual stream is f32 (see `forward`).
        let encoder_config = EncoderConfig { f32_stream: true, ..encoder_config };
        let emb = vb.pp("embeddings");
        Ok(ClipText {
            eos_token_id: cfg.usize_or("eos_token_id", 49407)? as u32,
            context_length,
            token_embedding: emb.get("token_embedding.weight", &[vocab, d])?,
            position_embedding: emb.get("position_embedding.weight", &[context_length, d])?,
            encoder: Encoder::load(&vb.pp("encoder").pp("layers"), encoder_config.clone(), &super::NAMES)?,
            final_norm: LayerNorm::load(vb, "final_layer_norm", d, encoder_config.eps)?,
            encoder_config,
            projection,
        })
    }

    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<TextOutput> {
        let (padded, pool_at) = self.pad(ids)?;
        // The residual stream stays f32 on every device (on a GPU, LayerNorms hand the GEMMs 16-bit inputs and each
        // block adds its output in f32): rounded to bf16 between blocks, it took the tiny CLIP fixture's
        // text_embeds from 7.7e-3 to 1.06e-2 relative error.
        let tokens = ops::embedding(&padded, &self.token_embedding, &self.position_embedding, DType::F32)?;
        self.encode(tokens, &pool_at)
    }

    /// CoOp: `forward` with the learned context `ctx` (`[B, n, D]`, or `[n, D]` shared) in place of the token
    /// embeddings at positions `at..at + n` (`ops::prompt_embedding`).
    pub fn forward_prompts(&self, ids: &[Vec<u32>], ctx: &Tensor, at: usize) -> Result<TextOutput> {
        let (padded, pool_at) = self.pad(ids)?;
        self.encode(ops::prompt_embedding(&padded, &self.token_embedding, &self.position_embedding, ctx, at)?, &pool_at)
    }

    /// The sequences padded to the longest with end-of-text, and where each is pooled (its first end-of-text).
    fn pad(&self, ids: &[Vec<u32>]) -> Result<(Vec<Vec<u32>>, Vec<usize>)> {
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        if ids.is_empty() || longest == 0 || longest > self.context_length {
            return Err(Error::invalid(
                "clip text",
                format!("{} sequences of up to {longest} tokens (context is {})", ids.len(), self.context_length),
            ));
        }
        let pool_at: Vec<usize> = ids.iter().map(|s| self.pool_position(s)).collect();
        let padded: Vec<Vec<u32>> = ids
            .iter()
            .map(|s| s.iter().copied().chain(std::iter::repeat(self.eos_token_id)).take(longest).collect())
            .collect();
        Ok((padded, pool_at))
    }

    /// Where a sequence is pooled: at its first end-of-text, as transformers does. OpenAI's own configs say
    /// `eos_token_id` 2, not the id of their end-of-text token; for those transformers pools at the largest id
    /// (the first, if repeated), where end-of-text sits as the last entry of CLIP's vocabulary, and so does this.
    fn pool_position(&self, ids: &[u32]) -> usize {
        if self.eos_token_id == LEGACY_EOS_TOKEN_ID {
            let largest = ids.iter().copied().max().unwrap_or(0);
            return ids.iter().position(|&t| t == largest).unwrap_or(0);
        }
        ids.iter().position(|&t| t == self.eos_token_id).unwrap_or(ids.len() - 1)
    }

    fn encode(&self, tokens: Tensor, pool_at: &[usize]) -> Result<TextOutput> {
        let last_hidden_state = self.final_norm.forward(&self.encoder.forward(tokens)?)?;
        let pooler_output = ops::select_rows(&last_hidden_state, pool_at)?;
        let text_embeds = self.projection.as_ref().map(|p| p.forward(&pooler_output)).transpose()?;
        Ok(TextOutput { last_hidden_state, pooler_output, text_embeds })
    }
}
