//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cpeal::weights::SafetensorsFile;
use cpeal::Tensor;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn load(path: &Path, name: &str) -> Tensor {
    SafetensorsFile::open(path).unwrap().get(name, None).unwrap()
}

/// Largest |a − b|, asserting equal shapes.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let (x, y) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
}

/// The tiny CLIP fixture's token sequences, without their padding (`attention_mask` = 0).
pub fn clip_fixture_sequences() -> Vec<Vec<u32>> {
    let inputs = SafetensorsFile::open(&fixture("hf-tiny/clip/inputs.safetensors")).unwrap();
    let (ids, shape) = inputs.get_i64("input_ids").unwrap();
    let (mask, _) = inputs.get_i64("attention_mask").unwrap();
    (0..shape[0])
        .map(|r| (0..shape[1]).filter(|&c| mask[r * shape[1] + c] == 1).map(|c| ids[r * shape[1] + c] as u32).collect())
        .collect()
}

pub fn cpeal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cpeal"))
}

/// A plain `Dinov2ForImageClassification` checkpoint in `dir` from the peft training fixture: the adapter's
/// LoRA deltas merged into the base q/k/v weights, W + (α/r)·B·A (α = 8, r = 4, as its adapter_config.json),
/// plus its classifier. The fixture's `logits` are PyTorch's output for exactly this model.
pub fn write_dinov2_classifier_checkpoint(dir: &std::path::Path) {
    let step = fixture("train/dinov2_lora_step");
    let adapter = SafetensorsFile::open(&step.join("adapter_init/adapter_model.safetensors")).unwrap();
    let base = SafetensorsFile::open(&fixture("hf-tiny/dinov2/model.safetensors")).unwrap();
    let (alpha, rank) = (8.0f32, 4.0f32);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for name in base.names() {
        let mut t = base.get(name, None).unwrap();
        let projection = ["query", "key", "value"].iter().zip(["q_proj", "k_proj", "v_proj"]).find_map(|(hf, peft)| {
            name.strip_suffix(&format!("attention.attention.{hf}.weight"))
                .map(|layer| format!("{layer}attention.{peft}"))
        });
        if let Some(p) = projection {
            let lora = |ab: &str| adapter.get(&format!("base_model.model.dinov2.{p}.lora_{ab}.weight"), None).unwrap();
            let (a, b) = (lora("A"), lora("B"));
            let ([out, r], [_, inp]) = (b.dims::<2>("B").unwrap(), a.dims::<2>("A").unwrap());
            let (av, bv, mut w) = (a.to_vec().unwrap(), b.to_vec().unwrap(), t.to_vec().unwrap());
            for o in 0..out {
                for i in 0..inp {
                    w[o * inp + i] += alpha / rank * (0..r).map(|j| bv[o * r + j] * av[j * inp + i]).sum::<f32>();
                }
            }
            t = Tensor::from_vec(w, &[out, inp]).unwrap();
        }
        tensors.push((name.to_string(), t));
    }
    for p in ["weight", "bias"] {
        tensors
            .push((format!("classifier.{p}"), adapter.get(&format!("base_model.model.classifier.{p}"), None).unwrap()));
    }
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    cpeal::weights::save_safetensors(&dir.join("model.safetensors"), &named, None).unwrap();
    let config = std::fs::read_to_string(fixture("hf-tiny/dinov2/config.json"))
        .unwrap()
        .replace("\"Dinov2Model\"", "\"Dinov2ForImageClassification\"");
    std::fs::write(dir.join("config.json"), config).unwrap();
}
