//! Standard architectures by name, with random weights written as a real checkpoint directory: what
//! `cpeal bench` times when no `--model` is given (speed does not depend on the weights' values).

use std::path::Path;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::save_safetensors;

pub const PRESETS: &[&str] =
    &["vit-b16", "dinov2-s14", "clip-b16-vision", "vit-tiny", "dinov2-tiny", "clip-tiny-vision"];

/// config.json of a preset, as transformers writes it for the public checkpoint.
pub fn config(name: &str) -> Result<Value> {
    Ok(match name {
        "vit-b16" => json!({"architectures": ["ViTModel"], "model_type": "vit", "hidden_size": 768,
            "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "patch_size": 16,
            "image_size": 224, "num_channels": 3, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "qkv_bias": true}),
        "dinov2-s14" => {
            json!({"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 384,
            "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4, "patch_size": 14,
            "image_size": 518, "num_channels": 3, "hidden_act": "gelu", "layer_norm_eps": 1e-6,
            "layerscale_value": 1.0, "qkv_bias": true, "use_swiglu_ffn": false})
        }
        "clip-b16-vision" => {
            json!({"architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
            "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "patch_size": 16, "image_size": 224, "num_channels": 3, "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5, "projection_dim": 512})
        }
        // Small models for whole-model checks on slow devices (the emulator): odd head dims, interpolation.
        "vit-tiny" => json!({"architectures": ["ViTModel"], "model_type": "vit", "hidden_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 160, "patch_size": 8,
            "image_size": 32, "num_channels": 3, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "qkv_bias": true}),
        "dinov2-tiny" => json!({"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2, "patch_size": 8,
            "image_size": 24, "num_channels": 3, "hidden_act": "gelu", "layer_norm_eps": 1e-6,
            "layerscale_value": 1.0, "qkv_bias": true, "use_swiglu_ffn": false}),
        "clip-tiny-vision" => {
            json!({"architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
            "hidden_size": 80, "num_hidden_layers": 2, "num_attention_heads": 1, "intermediate_size": 136,
            "patch_size": 8, "image_size": 32, "num_channels": 3, "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5, "projection_dim": 24})
        }
        other => return Err(Error::invalid("preset", format!("unknown `{other}` (known: {})", PRESETS.join(", ")))),
    })
}

/// Tensor names and shapes of a preset's checkpoint.
fn tensor_shapes(cfg: &Value) -> Vec<(String, Vec<usize>)> {
    let model_type = cfg["model_type"].as_str().unwrap_or_default();
    let u = |k: &str| cfg[k].as_u64().unwrap_or(0) as usize;
    let (d, layers, p, c) = (u("hidden_size"), u("num_hidden_layers"), u("patch_size"), u("num_channels"));
    let f = if model_type == "dinov2" { d * u("mlp_ratio") } else { u("intermediate_size") };
    let n = (u("image_size") / p).pow(2) + 1;
    let mut t: Vec<(String, Vec<usize>)> = Vec::new();
    let mut add = |k: String, s: &[usize]| t.push((k, s.to_vec()));
    let linear = |add: &mut dyn FnMut(String, &[usize]), k: &str, o: usize, i: usize| {
        add(format!("{k}.weight"), &[o, i]);
        add(format!("{k}.bias"), &[o]);
    };
    let norm = |add: &mut dyn FnMut(String, &[usize]), k: &str| {
        add(format!("{k}.weight"), &[d]);
        add(format!("{k}.bias"), &[d]);
    };
    if model_type == "clip_vision_model" {
        let v = "vision_model";
        add(format!("{v}.embeddings.patch_embedding.weight"), &[d, c, p, p]);
        add(format!("{v}.embeddings.class_embedding"), &[d]);
        add(format!("{v}.embeddings.position_embedding.weight"), &[n, d]);
        norm(&mut add, &format!("{v}.pre_layrnorm"));
        norm(&mut add, &format!("{v}.post_layernorm"));
        add("visual_projection.weight".into(), &[u("projection_dim"), d]);
        for l in 0..layers {
            let b = format!("{v}.encoder.layers.{l}");
            for (k, o, i) in [("q_proj", d, d), ("k_proj", d, d), ("v_proj", d, d), ("out_proj", d, d)] {
                linear(&mut add, &format!("{b}.self_attn.{k}"), o, i);
            }
            linear(&mut add, &format!("{b}.mlp.fc1"), f, d);
            linear(&mut add, &format!("{b}.mlp.fc2"), d, f);
            norm(&mut add, &format!("{b}.layer_norm1"));
            norm(&mut add, &format!("{b}.layer_norm2"));
        }
        return t;
    }
    add("embeddings.patch_embeddings.projection.weight".into(), &[d, c, p, p]);
    add("embeddings.patch_embeddings.projection.bias".into(), &[d]);
    add("embeddings.cls_token".into(), &[1, 1, d]);
    add("embeddings.position_embeddings".into(), &[1, n, d]);
    norm(&mut add, "layernorm");
    let dino = model_type == "dinov2";
    for l in 0..layers {
        let b = format!("encoder.layer.{l}");
        for k in ["query", "key", "value"] {
            linear(&mut add, &format!("{b}.attention.attention.{k}"), d, d);
        }
        linear(&mut add, &format!("{b}.attention.output.dense"), d, d);
        if dino {
            linear(&mut add, &format!("{b}.mlp.fc1"), f, d);
            linear(&mut add, &format!("{b}.mlp.fc2"), d, f);
            norm(&mut add, &format!("{b}.norm1"));
            norm(&mut add, &format!("{b}.norm2"));
            add(format!("{b}.layer_scale1.lambda1"), &[d]);
            add(format!("{b}.layer_scale2.lambda1"), &[d]);
        } else {
            linear(&mut add, &format!("{b}.intermediate.dense"), f, d);
            linear(&mut add, &format!("{b}.output.dense"), d, f);
            norm(&mut add, &format!("{b}.layernorm_before"));
            norm(&mut add, &format!("{b}.layernorm_after"));
        }
    }
    if !dino {
        linear(&mut add, "pooler.dense", d, d);
    }
    t
}

/// Write `dir/config.json` and `dir/model.safetensors` for `name` with weights drawn from a seeded
/// N(0, 0.02²)-like uniform distribution (norm weights near 1).
pub fn write_random_checkpoint(name: &str, dir: &Path, seed: u64) -> Result<()> {
    let cfg = config(name)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap_or_default())
        .map_err(|e| Error::io(&cfg_path, e))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (key, shape) in tensor_shapes(&cfg) {
        let numel: usize = shape.iter().product();
        let is_norm = key.contains("norm") && key.ends_with(".weight") || key.ends_with("lambda1");
        let data = (0..numel).map(|_| if is_norm { 1.0 } else { 0.0 } + rng.random_range(-0.035f32..0.035)).collect();
        tensors.push((key, Tensor::from_vec(data, &shape)?));
    }
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    save_safetensors(&dir.join("model.safetensors"), &named, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Model;

    #[test]
    fn every_preset_loads_and_runs_at_its_input_size() {
        for name in PRESETS {
            let dir = std::env::temp_dir().join(format!("cpeal-preset-test-{}-{name}", std::process::id()));
            write_random_checkpoint(name, &dir, 7).unwrap();
            let model = Model::load(&dir).unwrap();
            let side = if name.starts_with("dinov2") { 40 } else { 32 };
            let pixels = Tensor::from_vec(vec![0.25; 3 * side * side], &[1, 3, side, side]).unwrap();
            let out = model.forward_images(&pixels).unwrap();
            assert!(out.pooled().unwrap().to_vec().unwrap().iter().all(|v| v.is_finite()), "{name}");
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
