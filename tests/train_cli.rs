//! `cpeal train` end to end: the peft adapter it writes, its JSON lines, and its errors on bad input.

mod common;

use std::path::Path;
use std::process::Command;

use common::{batch_labels, cpeal_bin, fixture, rel_err};
use cpeal::adapters::LoraAdapter;

fn train(args: &[&str]) -> std::process::Output {
    Command::new(cpeal_bin()).arg("train").args(args).output().unwrap()
}

/// The metrics of PyTorch's logits for a fixture step's batch (what `cpeal eval` must report for the model that
/// gave them).
fn pytorch_metrics(step: &Path) -> cpeal::metrics::Metrics {
    let logits = common::load(&step.join("expected.safetensors"), "logits").to_vec().unwrap();
    cpeal::metrics::evaluate(&logits, 5, &batch_labels(&step.join("batch.safetensors"))).unwrap()
}

/// The CoOp fixture's initial context as a CoOp adapter directory in `dir`.
fn save_pytorch_coop_adapter(dir: &Path) {
    let step = fixture("train/clip_coop_step");
    let names: Vec<String> =
        std::fs::read_to_string(step.join("classnames.txt")).unwrap().lines().map(String::from).collect();
    let ctx = common::load(&step.join("adapter_init.safetensors"), "prompt_learner.ctx");
    cpeal::adapters::CoopAdapter { classnames: names, n_ctx: 4, class_specific: true, ctx }.save(dir, "tiny").unwrap();
}

#[test]
fn trains_a_fresh_adapter_and_writes_it_in_peft_format() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    let (model, data) = (fixture("hf-tiny/dinov2"), fixture("train/dinov2_lora_step/batch.safetensors"));
    let o = train(&[
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "3",
        "--lora-dropout",
        "0.25",
        "--json",
        "--out",
        out.to_str().unwrap(),
        "--eval-data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut lines: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let metrics = lines.pop().unwrap();
    assert_eq!(metrics["samples"], 6, "the evaluation comes last: {metrics}");
    assert!((0.0..=1.0).contains(&metrics["ece"].as_f64().unwrap()));
    assert_eq!(lines.len(), 4, "2 batches × 2 epochs");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["step"], i + 1);
        assert!(line["loss"].as_f64().unwrap().is_finite() && line["lr"].as_f64().unwrap() > 0.0);
    }
    let adapter = LoraAdapter::load(&out).unwrap();
    assert_eq!((adapter.config.r, adapter.config.dropout), (4, 0.25));
    let peft = LoraAdapter::load(&fixture("train/dinov2_lora_step/adapter_init")).unwrap();
    let names = |a: &LoraAdapter| a.tensors.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&adapter), names(&peft));
    let b = &adapter.tensors.iter().find(|(n, _)| n.contains("lora_B")).unwrap().1;
    assert!(b.to_vec().unwrap().iter().any(|&v| v != 0.0), "B moved away from its zero start");
}

#[test]
fn from_pytorchs_adapter_one_step_gives_pytorchs_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    let step = fixture("train/dinov2_lora_step");
    let (init, data) = (step.join("adapter_init"), step.join("batch.safetensors"));
    let o = train(&[
        "--model",
        fixture("hf-tiny/dinov2").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "6",
        "--warmup-epochs",
        "0",
        "--lr",
        "0.05",
        "--momentum",
        "0",
        "--weight-decay",
        "0",
        "--calib-schedule",
        "const",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (ours, theirs) =
        (LoraAdapter::load(&out).unwrap(), LoraAdapter::load(&step.join("adapter_after_step")).unwrap());
    for ((name, a), (_, b)) in ours.tensors.iter().zip(&theirs.tensors) {
        assert!(rel_err(a, b) < 1e-4, "{name}: {}", rel_err(a, b));
    }
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    let model = fixture("hf-tiny/dinov2");
    let data = fixture("train/dinov2_lora_step/batch.safetensors");
    let no_labels = fixture("hf-tiny/dinov2/inputs.safetensors");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--data", no_labels.to_str().unwrap()], vec!["inputs.safetensors", "labels"]),
        (vec!["--data", data.to_str().unwrap(), "--num-labels", "4"], vec!["labels", "row 0", "4 classes"]),
        (vec!["--data", data.to_str().unwrap(), "--lora-targets", "q_proj,dense"], vec!["--lora-targets", "dense"]),
        (vec!["--data", data.to_str().unwrap(), "--device", "cuda"], vec!["--device", "CPU"]),
    ];
    for (extra, words) in cases {
        let mut args = vec!["--model", model.to_str().unwrap(), "--epochs", "1", "--out", out.to_str().unwrap()];
        args.extend(extra);
        let o = train(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        for w in words {
            assert!(err.contains(w), "{args:?}: `{w}` not in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists());
    }
}

/// `cpeal eval` with PyTorch's adapter gives the metrics of PyTorch's logits for that batch.
#[test]
fn eval_reports_the_metrics_of_the_adapted_model() {
    let step = fixture("train/dinov2_lora_step");
    let (init, data) = (step.join("adapter_init"), step.join("batch.safetensors"));
    let o = Command::new(cpeal_bin())
        .args(["eval", "--model", fixture("hf-tiny/dinov2").to_str().unwrap(), "--adapter", init.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap(), "--batch-size", "4", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want = pytorch_metrics(&step);
    assert_eq!(got["samples"], 6);
    assert_eq!(got["accuracy"].as_f64().unwrap(), want.accuracy);
    for key in ["ece", "nll", "brier"] {
        let (a, b) = (
            got[key].as_f64().unwrap(),
            serde_json::from_str::<serde_json::Value>(&want.json()).unwrap()[key].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "{key}: {a} vs {b}");
    }
}

/// `--method coop` from PyTorch's context: one step gives PyTorch's context; a fresh run writes an adapter that
/// `--init` reads back.
#[test]
fn coop_from_pytorchs_context_one_step_gives_pytorchs_context() {
    use cpeal::adapters::CoopAdapter;
    let tmp = tempfile::tempdir().unwrap();
    let step = fixture("train/clip_coop_step");
    let classnames = step.join("classnames.txt");
    let init = tmp.path().join("init");
    save_pytorch_coop_adapter(&init);
    let out = tmp.path().join("adapter");
    let (model, data) = (fixture("hf-tiny/clip"), step.join("batch.safetensors"));
    let common_args = ["--method", "coop", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let o = train(
        &[
            &common_args[..],
            &["--classnames", classnames.to_str().unwrap(), "--init", init.to_str().unwrap(), "--epochs", "1"],
            &["--batch-size", "6", "--warmup-epochs", "0", "--lr", "0.1", "--momentum", "0", "--weight-decay", "0"],
            &["--calib-schedule", "const", "--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = CoopAdapter::load(&out).unwrap();
    let want = common::load(&step.join("adapter_after_step.safetensors"), "prompt_learner.ctx");
    assert!(rel_err(&got.ctx, &want) < 1e-4, "{}", rel_err(&got.ctx, &want));

    let fresh = tmp.path().join("fresh");
    let o = train(
        &[
            &common_args[..],
            &["--classnames", classnames.to_str().unwrap(), "--n-ctx", "2", "--epochs", "2", "--batch-size", "3"],
            &["--json", "--out", fresh.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 4);
    let adapter = CoopAdapter::load(&fresh).unwrap();
    assert_eq!((adapter.ctx.shape(), adapter.class_specific, adapter.classnames.len()), (&[2usize, 48][..], false, 5));
}

/// `cpeal merge` writes a plain `Dinov2ForImageClassification` checkpoint that gives PyTorch's logits.
#[test]
fn merge_writes_a_plain_checkpoint_with_the_adapted_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let step = fixture("train/dinov2_lora_step");
    let o = Command::new(cpeal_bin())
        .args(["merge", "--model", fixture("hf-tiny/dinov2").to_str().unwrap()])
        .args(["--adapter", step.join("adapter_init").to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "Dinov2ForImageClassification");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 5);
    let file = cpeal::weights::SafetensorsFile::open(&out.join("model.safetensors")).unwrap();
    assert!(file.names().all(|n| n.starts_with("dinov2.") || n.starts_with("classifier.")));
    let model = cpeal::models::Model::load(&out).unwrap();
    let logits = model.forward_images(&common::load(&step.join("batch.safetensors"), "pixel_values")).unwrap();
    let err =
        common::max_abs_diff(&logits.logits.unwrap(), &common::load(&step.join("expected.safetensors"), "logits"));
    assert!(err < 1e-5, "{err}");
}

/// `cpeal eval --adapter` on the emulated GPU: the adapter is merged before the weights are uploaded.
#[cfg(feature = "cuda-emu")]
#[test]
fn eval_runs_an_adapter_on_the_emulated_gpu() {
    let step = fixture("train/dinov2_lora_step");
    let o = Command::new(cpeal_bin())
        .args(["eval", "--model", fixture("hf-tiny/dinov2").to_str().unwrap(), "--device", "cuda-emu"])
        .args(["--adapter", step.join("adapter_init").to_str().unwrap()])
        .args(["--data", step.join("batch.safetensors").to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want = pytorch_metrics(&step);
    assert_eq!(got["accuracy"].as_f64().unwrap(), want.accuracy);
    assert!((got["nll"].as_f64().unwrap() - want.nll).abs() < 2e-2 * want.nll, "bf16 logits: {got} vs {want:?}");
}

/// `--method lora` on a CLIP checkpoint: LoRA on both towers with fixed prompts, saved under peft's names for
/// `CLIPModel`.
#[test]
fn lora_on_clip_trains_both_towers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    let step = fixture("train/clip_coop_step");
    let o = train(&[
        "--model",
        fixture("hf-tiny/clip").to_str().unwrap(),
        "--data",
        step.join("batch.safetensors").to_str().unwrap(),
        "--classnames",
        step.join("classnames.txt").to_str().unwrap(),
        "--n-ctx",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "3",
        "--lr",
        "0.05",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 4);
    let adapter = LoraAdapter::load(&out).unwrap();
    let names: Vec<&str> = adapter.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"base_model.model.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"),
        "{names:?}"
    );
    assert!(
        names.contains(&"base_model.model.vision_model.encoder.layers.1.self_attn.v_proj.lora_B.weight"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("classifier")));
}

#[test]
fn bench_train_times_a_step_on_a_checkpoint() {
    let o = Command::new(cpeal_bin())
        .args(["bench", "train", "--model", fixture("hf-tiny/dinov2").to_str().unwrap(), "--image-size", "32"])
        .args(["--batch-size", "2", "--iters", "1", "--warmup", "0", "--classes", "3", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(got["step_s"].as_f64().unwrap() > 0.0 && got["forward_s"].as_f64().unwrap() > 0.0, "{got}");
}

/// Training and evaluating straight from an MNIST-layout dataset: the rows an index file lists (as `cpeal
/// select` writes it), preprocessed for the model; a bad index names the file and line.
#[test]
fn trains_and_evaluates_on_the_rows_an_index_file_lists() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_idx_split(tmp.path(), &[0, 1, 2, 0, 1, 2, 0, 1], 7);
    std::fs::write(tmp.path().join("picked.txt"), "5\n0\n2\n7\n").unwrap();
    std::fs::write(tmp.path().join("bad.txt"), "1\n\n8\n").unwrap(); // the blank line counts
    let (model, out) = (fixture("hf-tiny/dinov2"), tmp.path().join("adapter"));
    let dataset = ["--idx", tmp.path().to_str().unwrap(), "--split", "t10k"];
    let picked = tmp.path().join("picked.txt");
    let o = train(
        &[
            &["--model", model.to_str().unwrap(), "--epochs", "1", "--batch-size", "2", "--json"][..],
            &dataset,
            &["--indices", picked.to_str().unwrap(), "--num-labels", "3", "--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 2, "4 rows in batches of 2");

    let o = Command::new(cpeal_bin())
        .args(["eval", "--model", model.to_str().unwrap(), "--adapter", out.to_str().unwrap(), "--device", "cpu"])
        .args(dataset)
        .args(["--limit", "6", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(metrics["samples"], 6);

    let bad = tmp.path().join("bad.txt");
    let o = train(
        &[
            &["--model", model.to_str().unwrap(), "--out", out.to_str().unwrap()][..],
            &dataset,
            &["--indices", bad.to_str().unwrap()],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.txt: field `line 3`") && err.contains("row 8"), "{err}");
}

/// A classifier's pool pass writes `logits` beside the features, for `cpeal select --logits`: the round after
/// training (merge, score the pool, pick by entropy).
#[test]
fn embedding_a_dataset_with_a_classifier_writes_its_logits() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_idx_split(tmp.path(), &[0, 1, 2, 3, 4], 13);
    let merged = tmp.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    common::write_dinov2_classifier_checkpoint(&merged);
    let out = tmp.path().join("pool.safetensors");
    let o = Command::new(cpeal_bin())
        .args(["embed", "--model", merged.to_str().unwrap(), "--idx", tmp.path().to_str().unwrap(), "--device", "cpu"])
        .args(["--output", out.to_str().unwrap(), "--batch-size", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = cpeal::weights::SafetensorsFile::open(&out).unwrap();
    assert_eq!(file.get("logits", None).unwrap().shape(), &[5, 5]);
    let picked = tmp.path().join("picked.txt");
    let o = Command::new(cpeal_bin())
        .args(["select", "--strategy", "entropy", "--logits", out.to_str().unwrap(), "--budget", "2"])
        .args(["--device", "cpu", "--out", picked.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&picked).unwrap().lines().count(), 2);
}

#[test]
fn trains_with_adamw_and_clipped_gradients() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    let (model, data) = (fixture("hf-tiny/dinov2"), fixture("train/dinov2_lora_step/batch.safetensors"));
    let o = train(&[
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--optimizer",
        "adamw",
        "--weight-decay",
        "0.01",
        "--clip-grad-norm",
        "1.0",
        "--lr",
        "0.01",
        "--warmup-epochs",
        "0",
        "--epochs",
        "3",
        "--batch-size",
        "3",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let losses: Vec<f64> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 6);
    assert!(losses[4..].iter().sum::<f64>() < losses[..2].iter().sum::<f64>(), "{losses:?}");
}

/// `cpeal eval --coop` with PyTorch's context: the metrics of PyTorch's logits for that batch.
#[test]
fn eval_of_a_coop_adapter_gives_the_metrics_of_pytorchs_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let step = fixture("train/clip_coop_step");
    let dir = tmp.path().join("coop");
    save_pytorch_coop_adapter(&dir);
    let data = step.join("batch.safetensors");
    let o = Command::new(cpeal_bin())
        .args(["eval", "--model", fixture("hf-tiny/clip").to_str().unwrap(), "--coop", dir.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap(), "--device", "cpu", "--batch-size", "4", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want = pytorch_metrics(&step);
    assert_eq!(got["accuracy"].as_f64().unwrap(), want.accuracy);
    assert!((got["nll"].as_f64().unwrap() - want.nll).abs() < 1e-4 * want.nll, "{got} vs {want:?}");
}
