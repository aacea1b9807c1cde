//! Floating-point operations of one image's forward, for model FLOP utilisation (MFU): the matrix products
//! (patch embedding, q/k/v and output projections, MLP, CLIP's projection) and attention's two products, at 2
//! per multiply-add. Normalisation, activations and softmax are left out, as MFU figures usually do.

use super::architecture;
use crate::error::{Error, Result};
use crate::weights::JsonConfig;

/// GFLOP of one `image_size`-pixel image through the vision tower of the checkpoint whose `config.json` is `cfg`.
pub fn image_gflop(cfg: &JsonConfig, image_size: usize) -> Result<f64> {
    let arch = architecture(cfg)?;
    if arch.starts_with("CLIPText") {
        return Err(Error::invalid(cfg.path().display().to_string(), format!("{arch} has no vision tower")));
    }
    let tower = if arch == "CLIPModel" { cfg.sub("vision_config")? } else { cfg.clone() };
    let d = tower.usize("hidden_size")?;
    let mlp = match tower.has("intermediate_size") {
        true => tower.usize("intermediate_size")?,
        false => (d as f64 * tower.f64_or("mlp_ratio", 4.0)?).round() as usize,
    };
    let (layers, patch, channels) =
        (tower.usize("num_hidden_layers")?, tower.usize("patch_size")?, tower.usize_or("num_channels", 3)?);
    let patches = (image_size / patch).pow(2);
    let tokens = patches + 1 + tower.usize_or("num_register_tokens", 0)?;
    let (d, mlp, t) = (d as f64, mlp as f64, tokens as f64);
    let embed = 2.0 * patches as f64 * (channels * patch * patch) as f64 * d;
    let per_layer = 2.0 * t * d * (4.0 * d + 2.0 * mlp) + 4.0 * t * t * d;
    let projection = match arch.as_str() {
        "CLIPModel" => 2.0 * d * cfg.usize("projection_dim")? as f64,
        "CLIPVisionModelWithProjection" => 2.0 * d * tower.usize("projection_dim")? as f64,
        _ => 0.0,
    };
    Ok((embed + layers as f64 * per_layer + projection) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::presets;

    fn preset(name: &str) -> JsonConfig {
        JsonConfig::from_value(std::path::Path::new(name), presets::config(name).unwrap())
    }

    #[test]
    fn vit_b16_matches_its_published_count() {
        // ViT-B/16 at 224 px is published as 17.6 G multiply-adds (fvcore: 17.58 GMac).
        let g = image_gflop(&preset("vit-b16"), 224).unwrap();
        assert!((g / (2.0 * 17.58) - 1.0).abs() < 0.01, "{g} GFLOP");
    }

    #[test]
    fn clip_adds_its_projection_and_dinov2_scales_with_the_grid() {
        let vit = image_gflop(&preset("vit-b16"), 224).unwrap();
        let clip = image_gflop(&preset("clip-b16-vision"), 224).unwrap();
        assert!((clip - vit - 2.0 * 768.0 * 512.0 / 1e9).abs() < 1e-9, "{clip} vs {vit}");
        // DINOv2-S/14: 256 patches at 224 px, 1369 at 518 px; attention makes the cost super-linear in tokens.
        let (small, large) =
            (image_gflop(&preset("dinov2-s14"), 224).unwrap(), image_gflop(&preset("dinov2-s14"), 518).unwrap());
        assert!(large / small > 1370.0 / 257.0, "{small} -> {large}");
    }

    #[test]
    fn a_text_model_has_no_image_flops() {
        let cfg = JsonConfig::from_value(
            std::path::Path::new("text/config.json"),
            serde_json::json!({"architectures": ["CLIPTextModel"], "hidden_size": 8}),
        );
        let err = image_gflop(&cfg, 224).unwrap_err().to_string();
        assert!(err.contains("text/config.json") && err.contains("no vision tower"), "{err}");
    }
}
