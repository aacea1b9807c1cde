//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use cpeal::weights::SafetensorsFile;
use cpeal::Tensor;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn load(path: &PathBuf, name: &str) -> Tensor {
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
