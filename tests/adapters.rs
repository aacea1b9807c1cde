//! Adapters in peft's format: fresh ones named exactly as peft names them, saved and read back.

mod common;

use common::{fixture, load, max_abs_diff};
use cpeal::adapters::{LoraAdapter, LoraConfig};
use cpeal::models::Model;

fn fixture_config() -> LoraConfig {
    LoraConfig::read(&fixture("train/dinov2_lora_step/adapter_init/adapter_config.json")).unwrap()
}

#[test]
fn a_fresh_adapter_has_peft_names_and_leaves_the_output_unchanged() {
    let mut model = Model::load(&fixture("hf-tiny/dinov2")).unwrap();
    let peft = LoraAdapter::load(&fixture("train/dinov2_lora_step/adapter_init")).unwrap();
    let fresh = LoraAdapter::fresh(&mut model, fixture_config(), Some(5), 7).unwrap();
    let names = |a: &LoraAdapter| a.tensors.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect::<Vec<_>>();
    assert_eq!(names(&fresh), names(&peft), "the same names and shapes as peft's adapter for this model");

    for (name, t) in &fresh.tensors {
        let v = t.to_vec().unwrap();
        if name.contains("lora_B") || name.ends_with("classifier.bias") {
            assert!(v.iter().all(|&x| x == 0.0), "{name} starts at zero");
        } else {
            let bound = if name.contains("lora_A") { 1.0 / (t.shape()[1] as f32).sqrt() } else { 0.04 };
            assert!(v.iter().all(|x| x.abs() <= bound) && v.iter().any(|&x| x != 0.0), "{name} within ±{bound}");
        }
    }
    let first_a = |a: &LoraAdapter| a.tensors.iter().find(|(n, _)| n.contains("lora_A")).unwrap().1.to_vec().unwrap();
    let again = LoraAdapter::fresh(&mut Model::load(&fixture("hf-tiny/dinov2")).unwrap(), fixture_config(), Some(5), 7);
    assert_eq!(first_a(&again.unwrap()), first_a(&fresh), "same seed");
    let other = LoraAdapter::fresh(&mut Model::load(&fixture("hf-tiny/dinov2")).unwrap(), fixture_config(), Some(5), 8);
    assert_ne!(first_a(&other.unwrap()), first_a(&fresh), "another seed");

    // B = 0: the adapted model gives the same logits as the bare model with the same head.
    let pixels = load(&fixture("train/dinov2_lora_step/batch.safetensors"), "pixel_values");
    fresh.attach(&mut model, true).unwrap();
    let adapted = model.forward_images(&pixels).unwrap().logits.unwrap();
    let mut bare = Model::load(&fixture("hf-tiny/dinov2")).unwrap();
    let head = |n: &str| fresh.tensors.iter().find(|(name, _)| name.ends_with(n)).unwrap().1.clone();
    bare.set_classifier(head("classifier.weight"), Some(head("classifier.bias"))).unwrap();
    let plain = bare.forward_images(&pixels).unwrap().logits.unwrap();
    assert!(max_abs_diff(&adapted, &plain) < 1e-6);
}

#[test]
fn a_saved_adapter_reads_back_with_peft_s_config_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    let peft = LoraAdapter::load(&fixture("train/dinov2_lora_step/adapter_init")).unwrap();
    peft.save(&dir, "facebook/dinov2-small").unwrap();
    let back = LoraAdapter::load(&dir).unwrap();
    assert_eq!(back.config, peft.config);
    for ((n1, t1), (n2, t2)) in back.tensors.iter().zip(&peft.tensors) {
        assert_eq!(n1, n2);
        assert!(max_abs_diff(t1, t2) == 0.0, "{n1}");
    }
    // Every field we write is one peft wrote for this adapter, with the same value where it matters.
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap()).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("train/dinov2_lora_step/adapter_init/adapter_config.json")).unwrap(),
    )
    .unwrap();
    for (key, value) in ours.as_object().unwrap() {
        assert!(theirs.get(key).is_some(), "peft writes {key}");
        if !["base_model_name_or_path", "target_modules", "lora_alpha"].contains(&key.as_str()) {
            assert_eq!(value, &theirs[key], "{key}");
        }
    }

    // Saving again replaces the adapter whole and leaves nothing beside it.
    let fresh = LoraAdapter::fresh(&mut Model::load(&fixture("hf-tiny/dinov2")).unwrap(), fixture_config(), Some(5), 1);
    fresh.unwrap().save(&dir, "x").unwrap();
    let replaced = LoraAdapter::load(&dir).unwrap();
    assert!(replaced
        .tensors
        .iter()
        .any(|(n, t)| n.contains("lora_B") && t.to_vec().unwrap().iter().all(|&v| v == 0.0)));
    let mut left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, vec![std::ffi::OsString::from("adapter")]);
}

/// The adapter merged into the checkpoint's weights gives PyTorch's logits, and the merged tensors are those of
/// the checkpoint merged by hand (`common::write_dinov2_classifier_checkpoint`).
#[test]
fn a_merged_adapter_gives_pytorchs_logits() {
    let adapter = LoraAdapter::load(&fixture("train/dinov2_lora_step/adapter_init")).unwrap();
    let model = Model::load_merged(&fixture("hf-tiny/dinov2"), &cpeal::Device::Cpu, &adapter).unwrap();
    let step = fixture("train/dinov2_lora_step");
    let logits = model.forward_images(&load(&step.join("batch.safetensors"), "pixel_values")).unwrap().logits.unwrap();
    assert!(max_abs_diff(&logits, &load(&step.join("expected.safetensors"), "logits")) < 1e-5);

    let mut adapted = Model::load(&fixture("hf-tiny/dinov2")).unwrap();
    adapter.attach(&mut adapted, false).unwrap();
    let merged = adapted.merged_weights().unwrap();
    assert_eq!(merged.len(), 6 + 2, "q, k, v of two blocks and the head");
    let tmp = tempfile::tempdir().unwrap();
    common::write_dinov2_classifier_checkpoint(tmp.path());
    let by_hand = cpeal::weights::SafetensorsFile::open(&tmp.path().join("model.safetensors")).unwrap();
    for (name, t) in &merged {
        assert!(max_abs_diff(t, &by_hand.get(name, None).unwrap()) < 1e-6, "{name}");
    }
}
