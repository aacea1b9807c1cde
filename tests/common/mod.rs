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

/// The int64 `labels` of a batch file, as class indices.
pub fn batch_labels(path: &Path) -> Vec<usize> {
    let (ids, _) = SafetensorsFile::open(path).unwrap().get_i64("labels").unwrap();
    ids.into_iter().map(|v| v as usize).collect()
}

/// ‖a − b‖ / ‖b‖, asserting equal shapes.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (x, y) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    let num: f64 = x.iter().zip(&y).map(|(p, q)| (*p as f64 - *q as f64).powi(2)).sum();
    let den: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum();
    (num / den).sqrt()
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

/// The tiny ViT fixture widened to head dim 64, so that its attention runs the tensor-core kernels (the tiny
/// fixtures' heads are 12 and 16 wide, which take the generic one): hidden 48 → 128 (2 heads of 64),
/// intermediate 96 → 256, every tensor seeded-random (LayerNorm weights near 1) and a bf16 value, so that a
/// 16-bit device holds the same weights as the CPU. Written as config.json and model.safetensors into `dir`; the
/// fixture's pixel_values fit it.
pub fn write_vit_head_dim_64(dir: &Path) {
    let widen = |d: usize| match d {
        48 => 128,
        96 => 256,
        d => d,
    };
    let base = SafetensorsFile::open(&fixture("hf-tiny/vit/model.safetensors")).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let x = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        f32::from_bits((x.to_bits() + 0x8000) & 0xFFFF_0000) // to the nearest bf16 (ties away from zero)
    };
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for name in base.names() {
        let shape: Vec<usize> = base.get(name, None).unwrap().shape().iter().map(|&d| widen(d)).collect();
        let (norm_weight, bias) = (name.contains("layernorm") && name.ends_with(".weight"), name.ends_with(".bias"));
        let values = (0..shape.iter().product::<usize>())
            .map(|_| match (norm_weight, bias) {
                (true, _) => 1.0 + uniform() / 8.0,
                (_, true) => uniform() / 8.0,
                _ => uniform() / 16.0,
            })
            .collect();
        tensors.push((name.to_string(), Tensor::from_vec(values, &shape).unwrap()));
    }
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    cpeal::weights::save_safetensors(&dir.join("model.safetensors"), &named, None).unwrap();
    let mut config = std::fs::read_to_string(fixture("hf-tiny/vit/config.json")).unwrap();
    for (from, to) in [
        ("\"hidden_size\": 48", "\"hidden_size\": 128"),
        ("\"intermediate_size\": 96", "\"intermediate_size\": 256"),
        ("\"num_attention_heads\": 3", "\"num_attention_heads\": 2"),
        ("\"pooler_output_size\": 48", "\"pooler_output_size\": 128"),
    ] {
        assert!(config.contains(from), "the tiny ViT config has {from}");
        config = config.replace(from, to);
    }
    std::fs::write(dir.join("config.json"), config).unwrap();
}

/// A `t10k` split of `labels.len()` 28×28 images (IDX files) in `dir`; `stride` varies the pixels.
pub fn write_idx_split(dir: &Path, labels: &[u8], stride: usize) {
    write_idx_images(dir, labels, |i| (i * stride % 251) as u8);
}

/// A `t10k` split in `dir` whose pixel `i` (counted over all images, row-major) is `pixel(i)`.
pub fn write_idx_images(dir: &Path, labels: &[u8], pixel: impl FnMut(usize) -> u8) {
    let idx = |dims: &[u32], data: &[u8]| {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        dims.iter().for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
        out.extend_from_slice(data);
        out
    };
    let n = labels.len();
    let pixels: Vec<u8> = (0..n * 28 * 28).map(pixel).collect();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx(&[n as u32, 28, 28], &pixels)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(&[n as u32], labels)).unwrap();
}

/// Images of 3 classes (apple, moss, sky: red, green or blue over noise), 16×16 PNGs: 6 a class in
/// `pool/<class>/`, 3 in `test/<class>/`, and the same lists as CoOp's `split.json`.
pub fn write_image_dataset(root: &Path) {
    let mut split = serde_json::json!({"train": [], "val": [], "test": []});
    let mut state = 7u32;
    for (part, key, count) in [("pool", "train", 6), ("test", "test", 3)] {
        for (label, class) in ["apple", "moss", "sky"].iter().enumerate() {
            let dir = root.join(part).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for k in 0..count {
                let img = image::RgbImage::from_fn(16, 16, |_, _| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let noise = (state >> 24) as u8 / 3;
                    let mut px = [noise; 3];
                    px[label] = px[label].saturating_add(150);
                    image::Rgb(px)
                });
                let rel = format!("{part}/{class}/{k}.png");
                img.save(root.join(&rel)).unwrap();
                split[key].as_array_mut().unwrap().push(serde_json::json!([rel, label, class]));
            }
        }
    }
    std::fs::write(root.join("split.json"), split.to_string()).unwrap();
}
