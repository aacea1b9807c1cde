//! `cpeal embed --images …`: stream image files through the preprocessor and the model, writing one pooled
//! embedding per image (`embeddings` [N, D]) and the file order (`OUT.files.txt`, and the safetensors
//! metadata key `files`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cpeal::images::ImageSource;
use cpeal::models::Model;
use cpeal::preprocess::Preprocessor;
use cpeal::weights::save_safetensors;
use cpeal::{Device, Error, Tensor};

use super::embed::concat_rows;

/// Pooled embeddings of every image in `paths`, in file order.
pub fn embed_paths(
    model: &Model,
    model_dir: &Path,
    device: &Device,
    paths: &[PathBuf],
    batch_size: usize,
) -> cpeal::Result<(Vec<PathBuf>, Tensor)> {
    let source = ImageSource::from_args(paths)?;
    let pre = Preprocessor::for_model(model, model_dir)?;
    let mut files = Vec::with_capacity(source.len());
    let mut parts = Vec::new();
    for batch in source.batches(&pre, batch_size)? {
        let (names, pixels) = batch?;
        parts.push(model.forward_images(&pixels.to_device(device)?)?.pooled()?);
        files.extend(names);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok((files, concat_rows(&refs)?))
}

pub fn run(
    model: &Model,
    model_dir: &Path,
    device: &Device,
    paths: &[PathBuf],
    batch_size: usize,
    output: &Path,
) -> cpeal::Result<()> {
    let (files, embeddings) = embed_paths(model, model_dir, device, paths, batch_size)?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let list = output.with_extension("files.txt");
    std::fs::write(&list, names.join("\n") + "\n").map_err(|e| Error::io(&list, e))?;
    let meta = HashMap::from([
        ("model".to_string(), model_dir.display().to_string()),
        ("files".to_string(), serde_json::to_string(&names).unwrap_or_default()),
    ]);
    save_safetensors(output, &[("features", &embeddings)], Some(meta))?;
    eprintln!("wrote {} ({} images, file order in {})", output.display(), files.len(), list.display());
    Ok(())
}
