//! Every hf-tiny fixture reproduced from its checkpoint: outputs within 1e-4 (max abs) of transformers' float64
//! forward, and a batch of one equal to the same row of the full batch.

mod common;

use common::{fixture, load, max_abs_diff};
use cpeal::models::Model;
use cpeal::weights::SafetensorsFile;
use cpeal::Tensor;

const TOL: f32 = 1e-4;

fn check_vision(name: &str, outputs: &[&str]) {
    let dir = fixture(&format!("hf-tiny/{name}"));
    let model = Model::load(&dir).unwrap();
    let pixels = load(&dir.join("inputs.safetensors"), "pixel_values");
    let out = model.forward_images(&pixels).unwrap();
    let expected = dir.join("expected.safetensors");
    for &key in outputs {
        let got = out.get(key).unwrap_or_else(|| panic!("{name} has no output {key}"));
        let err = max_abs_diff(got, &load(&expected, key));
        assert!(err <= TOL, "{name}/{key}: max abs error {err}");
    }
}

#[test]
fn vit_matches_transformers() {
    check_vision("vit", &["last_hidden_state", "pooler_output"]);
}

#[test]
fn clip_vision_with_projection_matches_transformers() {
    check_vision("clip_vision", &["last_hidden_state", "image_embeds"]);
}

#[test]
fn dinov2_with_registers_and_antialiased_positions_matches_transformers() {
    check_vision("dinov2_registers", &["last_hidden_state", "pooler_output"]);
}

#[test]
fn dinov2_with_interpolated_positions_matches_transformers() {
    check_vision("dinov2", &["last_hidden_state", "pooler_output"]);
}

#[test]
fn clip_model_text_image_and_logits_match_transformers() {
    let dir = fixture("hf-tiny/clip");
    let model = Model::load(&dir).unwrap();
    let clip = model.clip().unwrap();
    let inputs = SafetensorsFile::open(&dir.join("inputs.safetensors")).unwrap();
    let sequences = common::clip_fixture_sequences();
    let text = clip.forward_texts(&sequences).unwrap().text_embeds.unwrap();
    let images = model.forward_images(&inputs.get("pixel_values", None).unwrap()).unwrap().image_embeds.unwrap();
    let expected = dir.join("expected.safetensors");
    for (key, got) in [("text_embeds", &text), ("image_embeds", &images)] {
        let err = max_abs_diff(got, &load(&expected, key));
        assert!(err <= TOL, "clip/{key}: max abs error {err}");
    }
    let logits = clip.logits_per_image(&images, &text).unwrap();
    let err = max_abs_diff(&logits, &load(&expected, "logits_per_image"));
    assert!(err <= 1e-3, "clip/logits_per_image: max abs error {err}");
}

/// OpenAI's configs say `eos_token_id: 2`; transformers then pools at the largest id (end-of-text), not at an id
/// 2 inside the text. The same weights with the corrected id must give the same embeddings.
#[test]
fn clip_text_with_openai_legacy_eos_id_pools_at_end_of_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("hf-tiny/clip");
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join(file), tmp.path().join(file)).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert_eq!(config.matches("\"eos_token_id\": 49407").count(), 1, "the text config's id, once");
    std::fs::write(tmp.path().join("config.json"), config.replace("\"eos_token_id\": 49407", "\"eos_token_id\": 2"))
        .unwrap();
    let tokenizer = cpeal::tokenizer::ClipTokenizer::from_dir(&dir).unwrap();
    let mut ids = tokenizer.encode_batch(&["a sign", "a photo of a cat"]).unwrap();
    ids[0].insert(2, 2); // id 2 inside the text (the byte `#` without a word's end)
    let embeds = |dir: &std::path::Path| {
        let model = Model::load(dir).unwrap();
        model.clip().unwrap().forward_texts(&ids).unwrap().text_embeds.unwrap()
    };
    let (fixed, legacy) = (embeds(&dir), embeds(tmp.path()));
    assert!(max_abs_diff(&legacy, &fixed) == 0.0, "legacy {:?} vs {:?}", legacy.to_vec(), fixed.to_vec());
}

fn row(t: &Tensor, i: usize) -> Vec<f32> {
    let per = t.numel() / t.shape()[0];
    t.to_vec().unwrap()[i * per..(i + 1) * per].to_vec()
}

#[test]
fn batch_of_one_equals_row_of_batch() {
    for name in ["vit", "clip_vision", "dinov2", "dinov2_registers"] {
        let dir = fixture(&format!("hf-tiny/{name}"));
        let model = Model::load(&dir).unwrap();
        let pixels = load(&dir.join("inputs.safetensors"), "pixel_values");
        let full = model.forward_images(&pixels).unwrap();
        let per = pixels.numel() / pixels.shape()[0];
        let mut one_shape = pixels.shape().to_vec();
        one_shape[0] = 1;
        for i in 0..pixels.shape()[0] {
            let single =
                Tensor::from_vec(pixels.to_vec().unwrap()[i * per..(i + 1) * per].to_vec(), &one_shape).unwrap();
            let out = model.forward_images(&single).unwrap();
            let (a, b) = (row(&full.last_hidden_state, i), out.last_hidden_state.to_vec().unwrap());
            let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-5, "{name} row {i}: {diff}");
        }
    }
}

/// `Dinov2ForImageClassification` logits (classifier over concat(CLS, mean of patch tokens)) against the peft
/// fixture's logits, computed by PyTorch (see `common::write_dinov2_classifier_checkpoint`).
#[test]
fn dinov2_classifier_head_matches_peft_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_dinov2_classifier_checkpoint(tmp.path());
    let step = fixture("train/dinov2_lora_step");
    let model = Model::load(tmp.path()).unwrap();
    let out = model.forward_images(&load(&step.join("batch.safetensors"), "pixel_values")).unwrap();
    let err = max_abs_diff(out.logits.as_ref().unwrap(), &load(&step.join("expected.safetensors"), "logits"));
    assert!(err <= TOL, "classifier logits: max abs error {err}");
}
