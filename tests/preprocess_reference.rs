//! cpeal's preprocessing against the transformers PIL-backend image processors on the images and
//! `preprocessor_config.json` files of `tests/fixtures/preprocess` (made by `scripts/check-preprocess.py`).

use std::path::{Path, PathBuf};

use cpeal::preprocess::Preprocessor;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

struct Case {
    model_type: String,
    image: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("expected.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases: Vec<Case> = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            model_type: c["model_type"].as_str().unwrap().into(),
            image: c["image"].as_str().unwrap().into(),
            shape: c["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect(),
            values: c["pixel_values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect(),
        })
        .collect();
    assert!(cases.len() >= 12);
    cases
}

/// (max |difference|, number of differing values)
fn compare(case: &Case) -> (f32, usize) {
    // the image size passed here only matters when a field is absent, and the files have them all
    let pre = Preprocessor::from_dir(dir().join(&case.model_type), &case.model_type, 224).unwrap();
    let (h, w) = pre.output_size().unwrap();
    assert_eq!(vec![3, h, w], case.shape, "{} {}", case.model_type, case.image);
    let got = pre.load_and_preprocess(dir().join(&case.image)).unwrap();
    assert_eq!(got.len(), case.values.len());
    let diffs = got.iter().zip(&case.values).map(|(a, b)| (a - b).abs());
    diffs.fold((0f32, 0), |(m, n), d| (m.max(d), n + (d > 0.0) as usize))
}

#[test]
fn png_inputs_match_transformers_exactly() {
    for case in cases().iter().filter(|c| c.image.ends_with(".png")) {
        let (max, n) = compare(case);
        assert_eq!(n, 0, "{} {}: {n} values differ, max {max}", case.model_type, case.image);
    }
}

#[test]
fn jpeg_inputs_match_transformers_up_to_decoder_rounding() {
    // Pillow (libjpeg-turbo) and the `image` crate decode the same JPEG up to ±2 levels (chroma upsampling
    // rounding; measured on this file), so allow 3 levels at the smallest std.
    for case in cases().iter().filter(|c| c.image.ends_with(".jpg")) {
        let (max, _) = compare(case);
        eprintln!("{} {}: max abs difference {max}", case.model_type, case.image);
        let one_level = 1.0 / 255.0 / 0.225;
        assert!(max <= 3.0 * one_level, "{} {}: max difference {max}", case.model_type, case.image);
    }
}
