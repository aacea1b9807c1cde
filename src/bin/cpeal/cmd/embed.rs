//! `cpeal embed`: image features from a checkpoint.
//! `--input X.safetensors` (`pixel_values` [B,3,H,W], normalised) → transformers' outputs by name;
//! `--images DIR_OR_FILES…` → pooled embeddings [N, D] plus the file order, streamed in batches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cpeal::models::{Model, VisionOutput};
use cpeal::weights::{save_safetensors, SafetensorsFile};
use cpeal::{Device, DeviceKind, Error, StorageDtype, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face checkpoint directory
    #[arg(long)]
    pub model: PathBuf,
    /// safetensors file with `pixel_values` [B, 3, H, W] (f32, already normalised)
    #[arg(long, conflicts_with_all = ["images", "idx"], required_unless_present_any = ["images", "idx"])]
    pub input: Option<PathBuf>,
    /// image files or folders (searched recursively); writes pooled embeddings [N, D]
    #[arg(long, num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// MNIST-layout dataset folder (e.g. Fashion-MNIST IDX files); writes `embeddings` and `labels`
    #[arg(long, conflicts_with = "images")]
    pub idx: Option<PathBuf>,
    /// IDX split: `train` or `t10k`
    #[arg(long, default_value = "t10k", requires = "idx")]
    pub split: String,
    /// embed only the first N images of the split
    #[arg(long, requires = "idx")]
    pub limit: Option<usize>,
    /// output safetensors file
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
    /// GPU storage of weights and activations (f32 math either way; the CPU is always f32)
    #[arg(long, value_enum, default_value = "bf16")]
    pub dtype: StorageDtype,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    if args.batch_size == 0 {
        return Err(Error::invalid("--batch-size", "must be at least 1"));
    }
    let device = Device::open_with(args.device, args.dtype)?;
    let model = Model::load_on(&args.model, &device)?;
    if let Some(input) = &args.input {
        return embed_tensor_file(&model, &device, input, args);
    }
    if let Some(dir) = &args.idx {
        let req =
            super::embed_idx::IdxRequest { dir, split: &args.split, limit: args.limit, batch_size: args.batch_size };
        return super::embed_idx::run(&model, &args.model, &device, &req, &args.output);
    }
    super::embed_images::run(&model, &args.model, &device, &args.images, args.batch_size, &args.output)
}

fn embed_tensor_file(model: &Model, device: &Device, input: &Path, args: &Args) -> cpeal::Result<()> {
    let pixels = SafetensorsFile::open(input)?.get("pixel_values", None)?;
    let [b, c, _, _] = pixels.dims::<4>("pixel_values").map_err(|_| {
        Error::tensor(input, "pixel_values", format!("shape {:?}, expected [B, 3, H, W]", pixels.shape()))
    })?;
    if c != 3 || b == 0 {
        return Err(Error::tensor(input, "pixel_values", format!("shape {:?}, expected [B, 3, H, W]", pixels.shape())));
    }
    let mut parts: Vec<VisionOutput> = Vec::new();
    for start in (0..b).step_by(args.batch_size) {
        let batch = slice_batch(&pixels, start, (start + args.batch_size).min(b))?.to_device(device)?;
        parts.push(model.forward_images(&batch)?);
    }
    let out = concat_outputs(&parts)?;
    let named = out.named();
    let meta = HashMap::from([("model".to_string(), args.model.display().to_string())]);
    save_safetensors(&args.output, &named, Some(meta))?;
    eprintln!("wrote {} ({} images)", args.output.display(), b);
    Ok(())
}

/// Rows `start..end` of the leading dimension.
pub fn slice_batch(t: &Tensor, start: usize, end: usize) -> cpeal::Result<Tensor> {
    let per = t.numel() / t.shape()[0];
    let mut shape = t.shape().to_vec();
    shape[0] = end - start;
    Tensor::from_vec(t.cpu_slice()?[start * per..end * per].to_vec(), &shape)
}

/// Concatenate tensors along the leading dimension.
pub fn concat_rows(parts: &[&Tensor]) -> cpeal::Result<Tensor> {
    let mut shape = parts[0].shape().to_vec();
    shape[0] = parts.iter().map(|t| t.shape()[0]).sum();
    let mut data = Vec::with_capacity(shape.iter().product());
    for t in parts {
        data.extend_from_slice(&t.to_vec()?);
    }
    Tensor::from_vec(data, &shape)
}

fn concat_outputs(parts: &[VisionOutput]) -> cpeal::Result<VisionOutput> {
    let optional = |get: fn(&VisionOutput) -> Option<&Tensor>| -> cpeal::Result<Option<Tensor>> {
        let tensors: Option<Vec<&Tensor>> = parts.iter().map(get).collect();
        tensors.map(|ts| concat_rows(&ts)).transpose()
    };
    Ok(VisionOutput {
        last_hidden_state: concat_rows(&parts.iter().map(|p| &p.last_hidden_state).collect::<Vec<_>>())?,
        pooler_output: optional(|p| p.pooler_output.as_ref())?,
        image_embeds: optional(|p| p.image_embeds.as_ref())?,
        logits: optional(|p| p.logits.as_ref())?,
    })
}
