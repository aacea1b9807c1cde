//! CLIP byte-level BPE tokenizer read from a checkpoint's `tokenizer.json` (via the `tokenizers` crate).
//!
//! Every encoding is `<|startoftext|> … <|endoftext|>`; texts longer than the context are truncated to the
//! first `context_length - 1` tokens followed by `<|endoftext|>`, so the text tower's pooling position (the
//! end-of-text token) is always present. No padding: callers pad if they need a rectangular batch.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// CLIP's text context (`max_position_embeddings` of every released CLIP text tower).
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

pub struct ClipTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    bos: u32,
    eos: u32,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("path", &self.path)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("context_length", &self.context_length)
            .finish()
    }
}

impl ClipTokenizer {
    /// `tokenizer.json` inside a checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<ClipTokenizer> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<ClipTokenizer> {
        let path = path.as_ref();
        if let Err(e) = std::fs::metadata(path) {
            return Err(Error::io(path, e));
        }
        let inner = Tokenizer::from_file(path)
            .map_err(|e| Error::field(path, "<top level>", format!("not a valid tokenizer.json: {e}")))?;
        let special = |tok: &str| {
            inner
                .token_to_id(tok)
                .ok_or_else(|| Error::field(path, "model.vocab", format!("no `{tok}` token in the vocabulary")))
        };
        let (bos, eos) = (special(BOS)?, special(EOS)?);
        Ok(ClipTokenizer { inner, path: path.to_path_buf(), bos, eos, context_length: DEFAULT_CONTEXT_LENGTH })
    }

    /// Same tokenizer with another context length (at least 2: start and end tokens).
    pub fn with_context_length(mut self, context_length: usize) -> Result<ClipTokenizer> {
        if context_length < 2 {
            crate::bail!("tokenizer context length", "must be at least 2, got {context_length}");
        }
        self.context_length = context_length;
        Ok(self)
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn bos_token_id(&self) -> u32 {
        self.bos
    }

    pub fn eos_token_id(&self) -> u32 {
        self.eos
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `[BOS, tokens…, EOS]`, at most `context_length` ids, EOS always last.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = clip_clean(text);
        let enc = self
            .inner
            .encode(cleaned.as_str(), false)
            .map_err(|e| Error::invalid(format!("{}: encoding {text:?}", self.path.display()), e.to_string()))?;
        Ok(self.wrap(enc.get_ids()))
    }

    /// `encode` for each text, in order (parallel inside the `tokenizers` crate is not needed at CLI sizes).
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.encode(t.as_ref())).collect()
    }

    fn wrap(&self, body: &[u32]) -> Vec<u32> {
        let keep = body.len().min(self.context_length - 2);
        let mut ids = Vec::with_capacity(keep + 2);
        ids.push(self.bos);
        ids.extend_from_slice(&body[..keep]);
        ids.push(self.eos);
        ids
    }
}

/// CLIP's `whitespace_clean` + lowercasing: runs of whitespace become one space, ends are stripped.
/// (The `tokenizer.json` normalizer does the same, but not every exported file carries it.)
pub fn clip_clean(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}
