//! Converters from other model formats to Hugging Face checkpoints (`config.json`, `model.safetensors`,
//! `preprocessor_config.json`) that the rest of cpeal — and transformers — load.

pub mod dinov2_onnx;
pub mod graph;
pub mod onnx_proto;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::weights::save_safetensors;
use dinov2_onnx::Dinov2Meta;

/// What `convert_dinov2_onnx` wrote.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub meta: Dinov2Meta,
    pub tensors: usize,
    pub parameters: usize,
}

/// Convert the DINOv2 backbone of an ONNX graph into a `Dinov2Model` checkpoint in `out_dir`
/// (`config.json`, `model.safetensors`, `preprocessor_config.json`).
pub fn convert_dinov2_onnx(onnx: &Path, out_dir: &Path) -> Result<ConvertSummary> {
    let model = onnx_proto::read_model(onnx)?;
    let weights = dinov2_onnx::map_dinov2_graph(&model.graph, onnx)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let named: Vec<(&str, &crate::Tensor)> = weights.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&out_dir.join("model.safetensors"), &named, Some(metadata))?;
    write_json(&out_dir.join("config.json"), &dinov2_config(&weights.meta))?;
    write_json(&out_dir.join("preprocessor_config.json"), &dinov2_preprocessor_config())?;
    Ok(ConvertSummary {
        parameters: weights.tensors.iter().map(|(_, t)| t.numel()).sum(),
        tensors: weights.tensors.len(),
        meta: weights.meta,
    })
}

/// `config.json` as transformers writes it for a `Dinov2Model` (keys sorted, backbone stage names included).
/// `image_size` is the size the stored position grid was trained at (grid × patch); other sizes interpolate.
pub fn dinov2_config(meta: &Dinov2Meta) -> Value {
    let layers = meta.num_hidden_layers;
    let stage_names: Vec<String> =
        std::iter::once("stem".to_string()).chain((1..=layers).map(|i| format!("stage{i}"))).collect();
    let mlp_ratio = if meta.intermediate_size % meta.hidden_size == 0 {
        json!(meta.intermediate_size / meta.hidden_size)
    } else {
        json!(meta.intermediate_size as f64 / meta.hidden_size as f64)
    };
    // shortest decimal that round-trips the graph's f32 epsilon (9.99999997e-07 -> 1e-06)
    let eps: f64 = format!("{}", meta.layer_norm_eps).parse().unwrap_or(f64::from(meta.layer_norm_eps));
    json!({
        "apply_layernorm": true,
        "architectures": ["Dinov2Model"],
        "attention_probs_dropout_prob": 0.0,
        "drop_path_rate": 0.0,
        "dtype": "float32",
        "hidden_act": meta.hidden_act,
        "hidden_dropout_prob": 0.0,
        "hidden_size": meta.hidden_size,
        "image_size": meta.grid * meta.patch_size,
        "initializer_range": 0.02,
        "layer_norm_eps": eps,
        "layerscale_value": 1.0,
        "mlp_ratio": mlp_ratio,
        "model_type": "dinov2",
        "num_attention_heads": meta.num_attention_heads,
        "num_channels": meta.num_channels,
        "num_hidden_layers": layers,
        "out_features": [format!("stage{layers}")],
        "out_indices": [layers],
        "patch_size": meta.patch_size,
        "qkv_bias": true,
        "reshape_hidden_states": true,
        "stage_names": stage_names,
        "use_mask_token": true,
        "use_swiglu_ffn": false
    })
}

/// The image processor of the facebook/dinov2-* checkpoints: shortest edge 256 (bicubic), center crop 224,
/// rescale 1/255, ImageNet mean/std.
pub fn dinov2_preprocessor_config() -> Value {
    json!({
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": true,
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "BitImageProcessor",
        "image_std": [0.229, 0.224, 0.225],
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"shortest_edge": 256}
    })
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::field(path, "<json>", e.to_string()))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
