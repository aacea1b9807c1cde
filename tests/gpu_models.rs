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
    // scripts/test.sh runs these tests again with the setting on: it must take effect.
    let fold = std::env::var("CPEAL_LN_FOLD").is_ok_and(|v| v == "on");
    assert_eq!(model.folds_layer_norms(), fold, "CPEAL_LN_FOLD={fold}");
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

/// The tensor-core attention at model level: a ViT with heads of 64 on the emulator against the same checkpoint
/// on the CPU (f32). scripts/test.sh runs this again per `CPEAL_ATTENTION` candidate.
#[test]
fn vit_with_head_dim_64_on_emu_matches_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_vit_head_dim_64(tmp.path());
    let pixels = load(&fixture("hf-tiny/vit/inputs.safetensors"), "pixel_values");
    let reference = Model::load(tmp.path()).unwrap().forward_images(&pixels).unwrap();
    for dtype in DTYPES {
        let device = emu(dtype);
        let cpeal::Device::Gpu(gpu) = &device else { panic!("cuda-emu is a GPU device") };
        // The model's attention call: 17 tokens, 2 heads of 64 out of one fused qkv projection (row stride 384).
        let qkv = gpu.alloc(dtype.into(), 17 * 384).unwrap();
        let o = gpu.alloc(dtype.into(), 17 * 128).unwrap();
        let (q, k, v) = (
            qkv.slice(0, 17 * 384).unwrap(),
            qkv.slice(128, 17 * 384 - 128).unwrap(),
            qkv.slice(256, 17 * 384 - 256).unwrap(),
        );
        let mut att = cpeal::gpu::ops::attention::Attention::new(1, 2, 17, 64, &q, &k, &v, &o);
        (att.ld_q, att.ld_k, att.ld_v) = (384, 384, 384);
        let kernel = att.kernel_name(gpu);
        assert!(!kernel.contains("generic"), "heads of 64 take a tensor-core kernel, not {kernel}");
        // scripts/test.sh runs this again per candidate: it must be the one that runs (here, and for the GEMMs).
        if let Some(label) = std::env::var("CPEAL_ATTENTION").ok().filter(|l| l != "tiled") {
            assert!(kernel.starts_with(&format!("attention_fwd_{label}_")), "CPEAL_ATTENTION={label} runs {kernel}");
        }
        if let Ok(setting) = std::env::var("CPEAL_GEMM_SM90") {
            assert_gemms_run(gpu, dtype, &setting);
        }
        let model = Model::load_on(tmp.path(), &device).unwrap();
        let out = model.forward_images(&pixels.to_device(&device).unwrap()).unwrap();
        let launched = gpu.launched_kernels();
        assert!(launched.contains(&kernel), "the forward ran {launched:?}, not {kernel}");
        for key in ["last_hidden_state", "pooler_output"] {
            let (rel, max) = errors(out.get(key).unwrap(), reference.get(key).unwrap());
            eprintln!("cuda-emu {dtype:?} ({kernel}) vit-d64/{key}: rel {rel:.2e}, max abs {max:.2e}");
            assert!(rel <= REL_TOL, "{dtype:?} vit-d64/{key} ({kernel}): relative error {rel} (max abs {max})");
        }
    }
}

/// `CPEAL_GEMM_SM90` (scripts/test.sh) picks the kernel of the widened ViT's GEMMs: one label for all, or per
/// role (`qkv:<label>,fc1:<label>`): qkv 384 x 128, proj 128 x 128, fc1 512 x 128 with GELU, fc2 (K ≥ 2048).
fn assert_gemms_run(gpu: &cpeal::gpu::GpuDevice, dtype: StorageDtype, setting: &str) {
    use cpeal::gpu::ops::gemm::{Activation, Gemm};
    let shapes = [
        ("qkv", 384, 128, Activation::None),
        ("proj", 128, 128, Activation::None),
        ("fc1", 512, 128, Activation::Gelu),
        ("fc2", 128, 2048, Activation::None),
    ];
    for (role, n, k, act) in shapes {
        let label = match setting.contains(':') {
            true => setting.split(',').find_map(|part| part.strip_prefix(&format!("{role}:"))),
            false => Some(setting),
        };
        let Some(label) = label.filter(|l| *l != "off") else { continue };
        let (a, w, c) = (
            gpu.alloc(dtype.into(), 17 * k).unwrap(),
            gpu.alloc(dtype.into(), n * k).unwrap(),
            gpu.alloc(dtype.into(), 17 * n).unwrap(),
        );
        let gemm = Gemm::new(17, n, k, &a, &w, &c).act(act).kernel_name(gpu).unwrap();
        let want = format!("gemm_sm90_{}_", label.replace('-', "_"));
        assert!(gemm.starts_with(&want), "CPEAL_GEMM_SM90={setting}: the {role} GEMM runs {gemm}");
    }
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

/// A peft adapter merged into the weights before they are uploaded: the adapted model on the device.
#[test]
fn merged_adapter_on_emu_matches_pytorch_logits() {
    let step = fixture("train/dinov2_lora_step");
    let adapter = cpeal::adapters::LoraAdapter::load(&step.join("adapter_init")).unwrap();
    for dtype in DTYPES {
        let device = emu(dtype);
        let model = Model::load_merged(&fixture("hf-tiny/dinov2"), &device, &adapter).unwrap();
        let pixels = load(&step.join("batch.safetensors"), "pixel_values").to_device(&device).unwrap();
        let logits = model.forward_images(&pixels).unwrap().logits.unwrap();
        let (rel, max) = errors(&logits, &load(&step.join("expected.safetensors"), "logits"));
        eprintln!("cuda-emu {dtype:?} merged adapter logits: rel {rel:.2e}, max abs {max:.2e}");
        assert!(rel <= REL_TOL, "{dtype:?}: relative error {rel}");
    }
}

/// A LayerNorm folded into the linear after it (`CPEAL_LN_FOLD=on`), on the emulated device: the row statistics
/// kernel and the GEMM's normalising epilogue together give LN then linear as the CPU computes it, on rows with
/// a large mean (where `x·Gᵀ − mean·c` cancels most) and on shapes that take the vector and the scalar epilogue.
#[test]
fn folded_layer_norm_on_emu_matches_layer_norm_then_linear_on_the_cpu() {
    use cpeal::nn::{LayerNorm, Linear, NormedLinear};
    use cpeal::ops::Activation;
    let tensor = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape).unwrap();
    let uniform = |n: usize, seed: u64, lo: f32, hi: f32| -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect()
    };
    for dtype in DTYPES {
        for (rows, k, n, act) in
            [(37, 96, 72, Activation::Gelu), (5, 40, 53, Activation::None), (130, 64, 136, Activation::QuickGelu)]
        {
            let seed = (rows * k + n) as u64;
            let x = tensor(uniform(rows * k, seed, 2.0, 6.0), &[rows, k]);
            let norm = LayerNorm {
                weight: tensor(uniform(k, seed + 1, 0.5, 1.5), &[k]),
                bias: tensor(uniform(k, seed + 2, -0.5, 0.5), &[k]),
                eps: 1e-6,
            };
            let linear = Linear::new(
                tensor(uniform(n * k, seed + 3, -0.3, 0.3), &[n, k]),
                Some(tensor(uniform(n, seed + 4, -1.0, 1.0), &[n])),
            );
            let want = linear.forward_with(&norm.forward(&x).unwrap(), |e| e.with_activation(act)).unwrap();
            let device = emu(dtype);
            let folded = NormedLinear::folded(&norm, &linear, &device).unwrap();
            let got = folded.forward(&x.to_device_as(&device, dtype.into()).unwrap(), None, act).unwrap();
            assert!(got.gpu().is_some(), "the folded linear runs on the device");
            let (rel, max) = errors(&got, &want);
            // The unfolded pair on the same device, from the same rounded weights: the fold must not cost accuracy.
            let on_device = |t: &Tensor| t.to_device_as(&device, dtype.into()).unwrap();
            let separate = NormedLinear::separate(
                LayerNorm { weight: on_device(&norm.weight), bias: on_device(&norm.bias), eps: norm.eps },
                Linear::new(on_device(&linear.weight), linear.bias.as_ref().map(on_device)),
            );
            let (rel_separate, _) = errors(&separate.forward(&on_device(&x), None, act).unwrap(), &want);
            eprintln!(
                "cuda-emu {dtype:?} folded LN + linear {rows}x{k}x{n}: rel {rel:.2e} (unfolded {rel_separate:.2e}), max abs {max:.2e}"
            );
            assert!(rel <= REL_TOL, "{dtype:?} {rows}x{k}x{n}: relative error {rel} (max abs {max})");
            assert!(
                rel <= 1.5 * rel_separate,
                "{dtype:?} {rows}x{k}x{n}: folded {rel} against unfolded {rel_separate}"
            );
        }
    }
}

/// A residual linear that also returns its output rows' LayerNorm statistics (for the folded LayerNorm after
/// it): on the emulated device the GEMM's epilogue writes them per window and a kernel merges them; they must
/// equal the statistics of the output as stored, as the CPU computes them.
#[test]
fn linear_row_stats_on_emu_match_the_statistics_of_its_output() {
    use cpeal::nn::Linear;
    let tensor = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape).unwrap();
    let values = |n: usize, offset: f32| (0..n).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) + offset).collect();
    for dtype in DTYPES {
        let device = emu(dtype);
        for (rows, k, n) in [(37, 40, 53), (130, 64, 136), (9, 13, 300)] {
            let on_device = |t: Tensor| t.to_device_as(&device, dtype.into()).unwrap();
            let x = on_device(tensor(values(rows * k, 0.0), &[rows, k]));
            let residual = on_device(tensor(values(rows * n, 3.0), &[rows, n]));
            let linear = Linear::new(on_device(tensor(values(n * k, 0.0), &[n, k])), None);
            let (y, stats) = linear.forward_with_stats(&x, |e| e.with_residual(&residual), Some(1e-6)).unwrap();
            let want = cpeal::ops::layer_norm_stats(&Tensor::from_vec(y.to_vec().unwrap(), &[rows, n]).unwrap(), 1e-6)
                .unwrap();
            let (rel, max) = errors(&stats.expect("statistics were asked for"), &want);
            eprintln!("cuda-emu {dtype:?} linear row stats {rows}x{k}x{n}: rel {rel:.2e}, max abs {max:.2e}");
            assert!(rel <= 1e-5, "{dtype:?} {rows}x{k}x{n}: relative error {rel} (max abs {max})");
        }
    }
}

/// A patch of 3 channels × 3 × 3 (K = 27, as DINOv2's 3 × 14 × 14 = 588 not a multiple of 8): on the device the
/// GEMM weight and the im2col rows are padded to 32 columns, so the aligned GEMM runs, with the CPU's result.
#[test]
fn patch_embedding_with_k_not_a_multiple_of_8_runs_the_aligned_gemm_on_emu() {
    use cpeal::ops::{patch_embed, patch_gemm_weight};
    let (b, c, h, w, d, p) = (2, 3, 10, 7, 24, 3);
    let values = |n: usize, seed: usize| (0..n).map(|i| (((i * 37 + seed * 11) % 29) as f32 - 14.0) / 16.0).collect();
    let pixels = Tensor::from_vec(values(b * c * h * w, 1), &[b, c, h, w]).unwrap();
    let weight = Tensor::from_vec(values(d * c * p * p, 2), &[d, c, p, p]).unwrap();
    let bias = Tensor::from_vec(values(d, 3), &[d]).unwrap();
    let want = patch_embed(&pixels, &patch_gemm_weight(&weight).unwrap(), p, Some(&bias)).unwrap();
    for dtype in DTYPES {
        let device = emu(dtype);
        let Device::Gpu(gpu) = &device else { panic!("cuda-emu is a GPU device") };
        let gemm_weight = patch_gemm_weight(&weight.to_device_as(&device, dtype.into()).unwrap()).unwrap();
        assert_eq!(gemm_weight.shape(), &[d, 32]);
        let bias = bias.to_device_as(&device, dtype.into()).unwrap();
        let got = patch_embed(&pixels.to_device(&device).unwrap(), &gemm_weight, p, Some(&bias)).unwrap();
        let (rel, max) = errors(&got, &want);
        assert!(rel <= REL_TOL, "{dtype:?}: relative error {rel} (max abs {max})");
        let launched = gpu.launched_kernels();
        assert!(launched.iter().any(|k| k.starts_with("gemm_") && !k.contains("unaligned")), "{launched:?}");
        assert!(!launched.iter().any(|k| k.contains("unaligned")), "{launched:?}");
    }
}
