//! Whole-model forwards on the `cuda-emu` device (the kernels of `kernels/*.cu` compiled by g++): every hf-tiny
//! fixture against transformers' float64 outputs, with bf16 and with f16 storage: ‖out−ref‖/‖ref‖ ≤ 1e-2.
//! Needs `--features cuda-emu`.
#![cfg(feature = "cuda-emu")]

mod common;

use common::{fixture, load};
use cpeal::models::Model;
use cpeal::weights::SafetensorsFile;
use cpeal::{Device, DeviceKind, StorageDtype, Tensor};

const REL_TOL: f64 = 1e-2;

/// (‖a − b‖/‖b‖, max |a − b|)
fn errors(got: &Tensor, want: &Tensor) -> (f64, f32) {
    assert_eq!(got.shape(), want.shape());
    let (a, b) = (got.to_vec().unwrap(), want.to_vec().unwrap());
    let num: f64 = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    ((num / den).sqrt(), max)
}

fn emu(dtype: StorageDtype) -> Device {
    Device::open_with(DeviceKind::CudaEmu, dtype).expect("cuda-emu device")
}

const DTYPES: [StorageDtype; 2] = [StorageDtype::Bf16, StorageDtype::F16];

fn check_vision(name: &str, outputs: &[&str]) {
    for dtype in DTYPES {
        check_vision_as(name, outputs, dtype);
    }
}

fn check_vision_as(name: &str, outputs: &[&str], dtype: StorageDtype) {
    let dir = fixture(&format!("hf-tiny/{name}"));
    let device = emu(dtype);
    let model = Model::load_on(&dir, &device).unwrap();
    let pixels = load(&dir.join("inputs.safetensors"), "pixel_values").to_device(&device).unwrap();
    let out = model.forward_images(&pixels).unwrap();
    let on_device = out.last_hidden_state.gpu().expect("the forward must stay on the device");
    assert_eq!(on_device.buffer.dtype(), dtype.into(), "activations are stored as requested");
    let expected = dir.join("expected.safetensors");
    for &key in outputs {
        let got = out.get(key).unwrap_or_else(|| panic!("{name} has no output {key}"));
        let (rel, max) = errors(got, &load(&expected, key));
        eprintln!("cuda-emu {dtype:?} {name}/{key}: rel {rel:.2e}, max abs {max:.2e}");
        assert!(rel <= REL_TOL, "{dtype:?} {name}/{key}: relative error {rel} (max abs {max})");
    }
}

#[test]
fn vit_on_emu_matches_transformers() {
    check_vision("vit", &["last_hidden_state", "pooler_output"]);
}

#[test]
fn clip_vision_on_emu_matches_transformers() {
    check_vision("clip_vision", &["last_hidden_state", "image_embeds"]);
}

#[test]
fn dinov2_on_emu_matches_transformers() {
    check_vision("dinov2", &["last_hidden_state", "pooler_output"]);
}

#[test]
fn dinov2_with_registers_on_emu_matches_transformers() {
    check_vision("dinov2_registers", &["last_hidden_state", "pooler_output"]);
}

#[test]
fn clip_text_and_image_on_emu_match_transformers() {
    for dtype in DTYPES {
        check_clip(dtype);
    }
}

fn check_clip(dtype: StorageDtype) {
    let dir = fixture("hf-tiny/clip");
    let device = emu(dtype);
    let model = Model::load_on(&dir, &device).unwrap();
    let clip = model.clip().unwrap();
    let inputs = SafetensorsFile::open(&dir.join("inputs.safetensors")).unwrap();
    let sequences = common::clip_fixture_sequences();
    let text_out = clip.forward_texts(&sequences).unwrap();
    let hidden = text_out.last_hidden_state.gpu().expect("the text forward must stay on the device");
    assert_eq!(hidden.buffer.dtype(), dtype.into(), "the final LayerNorm writes the storage dtype");
    let text = text_out.text_embeds.unwrap();
    let pixels = inputs.get("pixel_values", None).unwrap().to_device(&device).unwrap();
    let images = model.forward_images(&pixels).unwrap().image_embeds.unwrap();
    let expected = dir.join("expected.safetensors");
    for (key, got) in [("text_embeds", &text), ("image_embeds", &images)] {
        let (rel, max) = errors(got, &load(&expected, key));
        eprintln!("cuda-emu {dtype:?} clip/{key}: rel {rel:.2e}, max abs {max:.2e}");
        assert!(rel <= REL_TOL, "{dtype:?} clip/{key}: relative error {rel} (max abs {max})");
    }
}

#[test]
fn cli_embed_on_cuda_emu_reproduces_fixture() {
    let dir = fixture("hf-tiny/vit");
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("out.safetensors");
    let status = std::process::Command::new(common::cpeal_bin())
        .args(["embed", "--model", dir.to_str().unwrap(), "--input"])
        .arg(dir.join("inputs.safetensors"))
        .args(["--output", out_path.to_str().unwrap(), "--device", "cuda-emu"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for key in ["last_hidden_state", "pooler_output"] {
        let (rel, max) = errors(&load(&out_path, key), &load(&dir.join("expected.safetensors"), key));
        eprintln!("cpeal embed --device cuda-emu vit/{key}: rel {rel:.2e}, max abs {max:.2e}");
        assert!(rel <= REL_TOL, "{key}: {rel}");
    }
}

#[test]
fn dinov2_classifier_head_on_emu_matches_pytorch_logits() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_dinov2_classifier_checkpoint(tmp.path());
    let step = fixture("train/dinov2_lora_step");
    for dtype in DTYPES {
        let device = emu(dtype);
        let model = Model::load_on(tmp.path(), &device).unwrap();
        let pixels = load(&step.join("batch.safetensors"), "pixel_values").to_device(&device).unwrap();
        let logits = model.forward_images(&pixels).unwrap().logits.unwrap();
        let (rel, max) = errors(&logits, &load(&step.join("expected.safetensors"), "logits"));
        eprintln!("cuda-emu {dtype:?} dinov2 classifier logits: rel {rel:.2e}, max abs {max:.2e}");
        assert!(rel <= REL_TOL, "{dtype:?}: relative error {rel}");
    }
}
