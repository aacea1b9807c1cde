//! Whole-model forwards on the `cuda-emu` device (the kernels of `kernels/*.cu` compiled by g++): every hf-tiny
//! fixture within bf16 tolerance (‖out−ref‖/‖ref‖ ≤ 1e-2) of transformers' float64 outputs, and equal to the CPU
//! path within the same tolerance. Needs `--features cuda-emu`.
#![cfg(feature = "cuda-emu")]

mod common;

use common::{fixture, load};
use cpeal::models::Model;
use cpeal::weights::SafetensorsFile;
use cpeal::{Device, DeviceKind, Tensor};

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

fn emu() -> Device {
    Device::open(DeviceKind::CudaEmu).expect("cuda-emu device")
}

fn check_vision(name: &str, outputs: &[&str]) {
    let dir = fixture(&format!("hf-tiny/{name}"));
    let device = emu();
    let model = Model::load_on(&dir, &device).unwrap();
    let pixels = load(&dir.join("inputs.safetensors"), "pixel_values").to_device(&device).unwrap();
    let out = model.forward_images(&pixels).unwrap();
    assert!(out.last_hidden_state.gpu().is_some(), "the forward must stay on the device");
    let expected = dir.join("expected.safetensors");
    for &key in outputs {
        let got = match key {
            "last_hidden_state" => &out.last_hidden_state,
            "pooler_output" => out.pooler_output.as_ref().unwrap(),
            "image_embeds" => out.image_embeds.as_ref().unwrap(),
            other => panic!("unknown output {other}"),
        };
        let (rel, max) = errors(got, &load(&expected, key));
        eprintln!("cuda-emu {name}/{key}: rel {rel:.2e}, max abs {max:.2e}");
        assert!(rel <= REL_TOL, "{name}/{key}: relative error {rel} (max abs {max})");
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
fn clip_text_and_image_on_emu_match_transformers() {
    let dir = fixture("hf-tiny/clip");
    let device = emu();
    let model = Model::load_on(&dir, &device).unwrap();
    let clip = model.clip().unwrap();
    let inputs = SafetensorsFile::open(&dir.join("inputs.safetensors")).unwrap();
    let (ids, shape) = inputs.get_i64("input_ids").unwrap();
    let (mask, _) = inputs.get_i64("attention_mask").unwrap();
    let sequences: Vec<Vec<u32>> = (0..shape[0])
        .map(|r| (0..shape[1]).filter(|&c| mask[r * shape[1] + c] == 1).map(|c| ids[r * shape[1] + c] as u32).collect())
        .collect();
    let text = clip.forward_texts(&sequences).unwrap().text_embeds.unwrap();
    let pixels = inputs.get("pixel_values", None).unwrap().to_device(&device).unwrap();
    let images = model.forward_images(&pixels).unwrap().image_embeds.unwrap();
    let expected = dir.join("expected.safetensors");
    for (key, got) in [("text_embeds", &text), ("image_embeds", &images)] {
        let (rel, max) = errors(got, &load(&expected, key));
        eprintln!("cuda-emu clip/{key}: rel {rel:.2e}, max abs {max:.2e}");
        assert!(rel <= REL_TOL, "clip/{key}: relative error {rel} (max abs {max})");
    }
}
