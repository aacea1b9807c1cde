//! Adapter training against PyTorch: the peft fixture's LoRA adapter (DINOv2, q/k/v of both blocks, plus the
//! classifier peft saves whole) placed on the frozen tiny checkpoint, unmerged.

mod common;

use common::{fixture, load, max_abs_diff};
use cpeal::adapters::LoraAdapter;
use cpeal::models::Model;
use cpeal::Tensor;

fn lora_step_model() -> (Model, Vec<(String, Tensor)>) {
    let mut model = Model::load(&fixture("hf-tiny/dinov2")).unwrap();
    let adapter = LoraAdapter::load(&fixture("train/dinov2_lora_step/adapter_init")).unwrap();
    assert_eq!((adapter.config.r, adapter.config.alpha, adapter.config.rslora), (4, 8.0, false));
    let params = adapter.attach(&mut model, true).unwrap();
    (model, params)
}

#[test]
fn lora_adapter_from_peft_gives_pytorchs_logits() {
    let (model, params) = lora_step_model();
    assert_eq!(params.len(), 14, "12 LoRA factors and the classifier's weight and bias");
    let step = fixture("train/dinov2_lora_step");
    let logits = model.forward_images(&load(&step.join("batch.safetensors"), "pixel_values")).unwrap().logits.unwrap();
    assert!(logits.is_tracked());
    let err = max_abs_diff(&logits, &load(&step.join("expected.safetensors"), "logits"));
    assert!(err < 1e-5, "logits: max abs error {err}");
}
