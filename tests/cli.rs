//! The `cpeal` binary end to end: outputs equal the fixtures, and every kind of bad input gives a clear error
//! naming the file and the tensor or field at fault, a non-zero exit code and no panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cpeal_bin, fixture, load, max_abs_diff};

fn run(args: &[&str]) -> Output {
    Command::new(cpeal_bin()).args(args).output().expect("cpeal runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the command exited non-zero, without a panic, and stderr mentions every `needle`.
fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

/// A copy of a fixture checkpoint in a temp dir, to be damaged by a test.
fn copy_model(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(&format!("hf-tiny/{name}/{f}")), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn embed_input_reproduces_fixture_outputs() {
    for (name, keys) in
        [("vit", ["last_hidden_state", "pooler_output"]), ("clip_vision", ["last_hidden_state", "image_embeds"])]
    {
        let dir = fixture(&format!("hf-tiny/{name}"));
        let tmp = tempfile::tempdir().unwrap();
        let out_path = tmp.path().join("out.safetensors");
        let out = run(&[
            "embed",
            "--model",
            s(&dir),
            "--input",
            s(&dir.join("inputs.safetensors")),
            "--output",
            s(&out_path),
            "--device",
            "cpu",
            "--batch-size",
            "1",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        for key in keys {
            let err = max_abs_diff(&load(&out_path, key), &load(&dir.join("expected.safetensors"), key));
            assert!(err <= 1e-4, "{name}/{key}: {err}");
        }
    }
}

#[test]
fn info_reports_architecture_and_parameters() {
    let out = run(&["info", "--model", s(&fixture("hf-tiny/dinov2"))]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("Dinov2Model") && text.contains("layers 2") && text.contains("F32"), "{text}");
}

#[test]
fn truncated_checkpoint_is_named() {
    let (_tmp, dir) = copy_model("vit");
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    assert_clean_failure(&run(&["info", "--model", s(&dir)]), &["model.safetensors", "truncated"]);
}

#[test]
fn non_safetensors_file_is_named() {
    let (_tmp, dir) = copy_model("vit");
    std::fs::write(dir.join("model.safetensors"), b"this is not a safetensors file at all").unwrap();
    assert_clean_failure(&run(&["info", "--model", s(&dir)]), &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn shape_mismatch_with_config_names_tensor() {
    let (_tmp, dir) = copy_model("vit");
    let cfg = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 96", "\"intermediate_size\": 97");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    assert_clean_failure(
        &run(&["info", "--model", s(&dir)]),
        &["model.safetensors", "encoder.layer.0.intermediate.dense.weight", "[96, 48]"],
    );
}

#[test]
fn wrong_dtype_names_tensor() {
    let (_tmp, dir) = copy_model("vit");
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    // Same byte size, integer dtype: the header stays valid, the tensor does not.
    let key = "\"embeddings.cls_token\":{\"dtype\":\"F32\"";
    assert!(header.contains(key), "{header}");
    let patched = header.replacen(key, "\"embeddings.cls_token\":{\"dtype\":\"I32\"", 1);
    bytes.splice(8..8 + n, patched.into_bytes());
    std::fs::write(&file, bytes).unwrap();
    assert_clean_failure(&run(&["info", "--model", s(&dir)]), &["embeddings.cls_token", "dtype"]);
}

#[test]
fn missing_tensor_is_named() {
    let (_tmp, dir) = copy_model("dinov2");
    let cfg = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    assert_clean_failure(&run(&["info", "--model", s(&dir)]), &["missing tensor", "encoder.layer.2."]);
}

#[test]
fn unknown_architecture_is_named() {
    let (_tmp, dir) = copy_model("vit");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"ViTModel\"", "\"SwinModel\"");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    assert_clean_failure(&run(&["info", "--model", s(&dir)]), &["config.json", "SwinModel"]);
}

#[test]
fn missing_config_field_is_named() {
    let (_tmp, dir) = copy_model("vit");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"hidden_size\": 48,", "");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    assert_clean_failure(&run(&["info", "--model", s(&dir)]), &["config.json", "hidden_size", "missing"]);
}

#[test]
fn undecodable_image_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out_path = tmp.path().join("out.safetensors");
    let out = run(&[
        "embed",
        "--model",
        s(&fixture("hf-tiny/vit")),
        "--images",
        s(tmp.path()),
        "--output",
        s(&out_path),
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&out, &["broken.png"]);
    assert!(!out_path.exists());
}

#[test]
fn empty_folder_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("nothing-here");
    std::fs::create_dir(&empty).unwrap();
    let out = run(&[
        "embed",
        "--model",
        s(&fixture("hf-tiny/vit")),
        "--images",
        s(&empty),
        "--output",
        s(&tmp.path().join("o.safetensors")),
    ]);
    assert_clean_failure(&out, &["nothing-here"]);
}

#[test]
fn input_file_without_pixel_values_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("hf-tiny/vit");
    let out = run(&[
        "embed",
        "--model",
        s(&dir),
        "--input",
        s(&dir.join("expected.safetensors")),
        "--output",
        s(&tmp.path().join("o.safetensors")),
    ]);
    assert_clean_failure(&out, &["expected.safetensors", "pixel_values"]);
}

#[test]
fn cuda_request_without_backend_fails_cleanly_and_auto_falls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("hf-tiny/vit");
    let input = dir.join("inputs.safetensors");
    let out = run(&[
        "embed",
        "--model",
        s(&dir),
        "--input",
        s(&input),
        "--output",
        s(&tmp.path().join("o.safetensors")),
        "--device",
        "auto",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("device: "), "auto must say which device it picked");
}

#[test]
fn zero_shot_and_embed_text_on_tiny_clip() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..3u8 {
        let img = image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([((x * 5 + i as u32 * 40) % 256) as u8, (y * 8) as u8, 200 - i * 50])
        });
        img.save(tmp.path().join(format!("img{i}.png"))).unwrap();
    }
    let classes = tmp.path().join("classes.txt");
    std::fs::write(&classes, "cat\ndog\nriver\n").unwrap();
    let clip = fixture("hf-tiny/clip");
    let out = run(&["zero-shot", "--model", s(&clip), "--images", s(tmp.path()), "--classnames", s(&classes)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "path,class,probability");
    assert_eq!(rows.len(), 4, "{csv}");
    for row in &rows[1..] {
        let fields: Vec<&str> = row.split(',').collect();
        assert!(["cat", "dog", "river"].contains(&fields[1]), "{row}");
        let p: f32 = fields[2].parse().unwrap();
        assert!((1.0 / 3.0..=1.0).contains(&p), "{row}");
    }
    let text_out = tmp.path().join("t.safetensors");
    let out = run(&["embed-text", "--model", s(&clip), "--text", "a photo of a cat.", "--output", s(&text_out)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = load(&text_out, "text_embeds");
    assert_eq!(t.shape(), &[1, 24]);
    let norm: f32 = t.to_vec().unwrap().iter().map(|v| v * v).sum();
    assert!((norm - 1.0).abs() < 1e-5);
}

#[test]
fn cpu_peak_reports_gflops_or_names_what_is_missing() {
    let out = run(&["bench", "cpu-peak", "--seconds", "0.05", "--json"]);
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let gflops = v["gflops"].as_f64().expect("gflops");
        assert!(gflops > 0.1 && v["threads"].as_u64().unwrap_or(0) >= 1, "{v}");
    } else {
        assert_clean_failure(&out, &["AVX2"]);
    }
    assert_clean_failure(&run(&["bench", "cpu-peak", "--seconds=0"]), &["--seconds"]);
}
