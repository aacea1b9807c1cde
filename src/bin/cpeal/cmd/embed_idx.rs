//! `cpeal embed --idx DIR [--split t10k] [--limit N]`: pooled embeddings of an MNIST-layout dataset
//! (Fashion-MNIST), with its labels: `features` [N, D] and `labels` [N], and `logits` [N, C] when the model has
//! a classification head (what `cpeal select --logits` scores).

use std::collections::HashMap;
use std::path::Path;

use cpeal::data::idx::read_split;
use cpeal::models::Model;
use cpeal::progress::Progress;
use cpeal::weights::save_safetensors;
use cpeal::{Device, Error, Tensor};

use super::embed::concat_rows;

pub struct IdxRequest<'a> {
    pub dir: &'a Path,
    pub split: &'a str,
    pub limit: Option<usize>,
    pub batch_size: usize,
}

pub fn run(model: &Model, model_dir: &Path, device: &Device, req: &IdxRequest, output: &Path) -> cpeal::Result<()> {
    let (images, labels) = read_split(req.dir, req.split, 256)?;
    let n = req.limit.unwrap_or(images.count).min(images.count);
    if n == 0 {
        return Err(Error::invalid(req.dir.display().to_string(), format!("split `{}` has no images", req.split)));
    }
    let pre = cpeal::preprocess::Preprocessor::for_model(model, model_dir)?;
    let mut progress = Progress::new(n, "embed");
    let (mut parts, mut logits) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(req.batch_size) {
        let end = (start + req.batch_size).min(n);
        let pixels = pre.idx_batch(&images, &(start..end).collect::<Vec<_>>())?;
        let out = model.forward_images(&pixels.to_device(device)?)?;
        parts.push(out.pooled()?);
        logits.extend(out.logits);
        progress.inc(end - start);
    }
    progress.finish();
    let embeddings = concat_rows(&parts.iter().collect::<Vec<_>>())?;
    let labels = Tensor::from_vec(labels[..n].iter().map(|&l| l as f32).collect(), &[n])?;
    let meta = HashMap::from([
        ("model".to_string(), model_dir.display().to_string()),
        ("dataset".to_string(), format!("{} ({}, first {n})", req.dir.display(), req.split)),
    ]);
    let logits = if logits.is_empty() { None } else { Some(concat_rows(&logits.iter().collect::<Vec<_>>())?) };
    let mut tensors = vec![("features", &embeddings), ("labels", &labels)];
    tensors.extend(logits.as_ref().map(|l| ("logits", l)));
    save_safetensors(output, &tensors, Some(meta))?;
    eprintln!("wrote {} ({n} images)", output.display());
    Ok(())
}
