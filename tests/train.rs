//! Adapter training against PyTorch: the peft fixture's LoRA adapter (DINOv2, q/k/v of both blocks, plus the
//! classifier peft saves whole) placed on the frozen tiny checkpoint, unmerged.

mod common;

use common::{batch_labels, fixture, load, max_abs_diff, rel_err};
use cpeal::adapters::LoraAdapter;
use cpeal::models::Model;
use cpeal::optim::Optimizer;
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

/// One SGD step of LoRA + classifier with the calibration loss (λ = 1, inter weighting, lr 0.05), as peft and
/// PyTorch took it: the loss terms, every adapter gradient, and the adapter after the step.
#[test]
fn one_lora_sgd_step_matches_pytorch() {
    use cpeal::ops::{calibration_loss, CalibWeighting, CalibrationLoss};
    let (model, mut params) = lora_step_model();
    let step = fixture("train/dinov2_lora_step");
    let expected = step.join("expected.safetensors");
    let batch = step.join("batch.safetensors");
    let logits = model.forward_images(&load(&batch, "pixel_values")).unwrap().logits.unwrap();
    let cfg = CalibrationLoss { weight: 1.0, weighting: CalibWeighting::Inter };
    let terms = calibration_loss(&logits, &batch_labels(&batch), &cfg).unwrap();
    for (name, got) in [("ce", terms.ce), ("l_uc", terms.l_uc), ("loss", terms.loss.to_vec().unwrap()[0])] {
        let want = load(&expected, name).to_vec().unwrap()[0];
        assert!(((got - want) / want).abs() < 1e-5, "{name}: {got} vs PyTorch {want}");
    }
    let entropy = Tensor::from_vec(terms.entropy.clone(), &[terms.entropy.len()]).unwrap();
    assert!(rel_err(&entropy, &load(&expected, "entropy")) < 1e-5);

    let grads = cpeal::autograd::backward(&terms.loss).unwrap();
    for (name, p) in &params {
        // PyTorch names the saved head's parameters by its in-memory copy.
        let torch_name = format!("grad.{}", name.replace("classifier.", "classifier.modules_to_save."));
        let err = rel_err(grads.get(p).unwrap(), &load(&expected, &torch_name));
        eprintln!("{torch_name}: {err:.1e}");
        assert!(err < 1e-4, "{torch_name}: relative error {err}");
    }

    cpeal::optim::Sgd::new(0.05, 0.0, 0.0).step(&mut params, &grads).unwrap();
    let after = LoraAdapter::load(&step.join("adapter_after_step")).unwrap();
    for ((name, p), (after_name, want)) in params.iter().zip(&after.tensors) {
        assert_eq!(name, after_name);
        let err = rel_err(p, want);
        eprintln!("{name} after the step: {err:.1e}");
        assert!(err < 1e-4, "{name} after the step: relative error {err}");
    }
}

/// One SGD step of CoOp (4 class-specific context vectors replacing "X X X X" in "X X X X {class}.") on the tiny
/// CLIP with the calibration loss (λ = 1, inter weighting, lr 0.1), as PyTorch took it.
#[test]
fn one_coop_sgd_step_matches_pytorch() {
    use cpeal::ops::{calibration_loss, CalibWeighting, CalibrationLoss};
    let step = fixture("train/clip_coop_step");
    let (batch, expected) = (step.join("batch.safetensors"), step.join("expected.safetensors"));
    let model = Model::load(&fixture("hf-tiny/clip")).unwrap();
    let clip = model.clip().unwrap();
    // Each prompt up to its end-of-text token; the context takes positions 1..=4.
    let (ids, shape) = cpeal::weights::SafetensorsFile::open(&batch).unwrap().get_i64("prompt_input_ids").unwrap();
    let prompts: Vec<Vec<u32>> = ids
        .chunks(shape[1])
        .map(|row| {
            let end = row.iter().position(|&t| t == 49407).unwrap();
            row[..=end].iter().map(|&t| t as u32).collect()
        })
        .collect();
    let ctx = load(&step.join("adapter_init.safetensors"), "prompt_learner.ctx").variable();
    let text = clip.forward_prompts(&prompts, &ctx, 1).unwrap().text_embeds.unwrap();
    let images = clip.forward_images(&load(&batch, "pixel_values")).unwrap().image_embeds.unwrap();
    assert!(text.is_tracked() && !images.is_tracked());
    let logits = clip.logits_per_image(&images, &text).unwrap();
    let err = max_abs_diff(&logits, &load(&expected, "logits"));
    assert!(err < 1e-4, "logits: max abs error {err}");

    let cfg = CalibrationLoss { weight: 1.0, weighting: CalibWeighting::Inter };
    let terms = calibration_loss(&logits, &batch_labels(&batch), &cfg).unwrap();
    for (name, got) in [("ce", terms.ce), ("l_uc", terms.l_uc), ("loss", terms.loss.to_vec().unwrap()[0])] {
        let want = load(&expected, name).to_vec().unwrap()[0];
        assert!(((got - want) / want).abs() < 1e-5, "{name}: {got} vs PyTorch {want}");
    }
    let grads = cpeal::autograd::backward(&terms.loss).unwrap();
    let err = rel_err(grads.get(&ctx).unwrap(), &load(&expected, "grad.prompt_learner.ctx"));
    eprintln!("grad.prompt_learner.ctx: {err:.1e}");
    assert!(err < 1e-4, "context gradient: relative error {err}");

    let mut params = vec![("prompt_learner.ctx".to_string(), ctx)];
    cpeal::optim::Sgd::new(0.1, 0.0, 0.0).step(&mut params, &grads).unwrap();
    let err = rel_err(&params[0].1, &load(&step.join("adapter_after_step.safetensors"), "prompt_learner.ctx"));
    eprintln!("prompt_learner.ctx after the step: {err:.1e}");
    assert!(err < 1e-4, "context after the step: relative error {err}");
}

fn options(epochs: usize, batch_size: usize, lr: f32, seed: u64) -> cpeal::train::TrainOptions {
    cpeal::train::TrainOptions {
        schedule: cpeal::train::Schedule {
            epochs,
            lr,
            warmup_epochs: 0,
            warmup_lr: 0.0,
            calib_weight: 1.0,
            anneal: false,
        },
        batch_size,
        optimizer: cpeal::optim::OptimizerKind::Sgd { momentum: 0.0, weight_decay: 0.0 },
        clip_grad_norm: None,
        weighting: cpeal::ops::CalibWeighting::Inter,
        seed,
    }
}

/// The trainer's first full-batch step is the fixture's step: the adapter it ends with is PyTorch's.
#[test]
fn the_trainer_takes_pytorchs_step() {
    let mut model = Model::load(&fixture("hf-tiny/dinov2")).unwrap();
    let step = fixture("train/dinov2_lora_step");
    let mut adapter = LoraAdapter::load(&step.join("adapter_init")).unwrap();
    let batch = step.join("batch.safetensors");
    let mut logs = Vec::new();
    let opts = options(1, 6, 0.05, 3);
    cpeal::train::train_image_classifier(
        &mut model,
        &mut adapter,
        &load(&batch, "pixel_values"),
        &batch_labels(&batch),
        &opts,
        |l| logs.push(l.clone()),
    )
    .unwrap();
    assert_eq!(logs.len(), 1);
    let want_loss = load(&step.join("expected.safetensors"), "loss").to_vec().unwrap()[0];
    assert!((logs[0].loss - want_loss).abs() < 1e-5 * want_loss, "{} vs {want_loss}", logs[0].loss);
    let after = LoraAdapter::load(&step.join("adapter_after_step")).unwrap();
    for ((name, got), (_, want)) in adapter.tensors.iter().zip(&after.tensors) {
        assert!(rel_err(got, want) < 1e-4, "{name}");
        assert!(!got.is_tracked());
    }
}

/// A fresh adapter (with dropout) learns the tiny batch, and the run is a function of its seed.
#[test]
fn training_lowers_the_loss_and_is_reproducible() {
    let batch = fixture("train/dinov2_lora_step/batch.safetensors");
    let (pixels, labels) = (load(&batch, "pixel_values"), batch_labels(&batch));
    let run = |seed: u64| {
        let mut model = Model::load(&fixture("hf-tiny/dinov2")).unwrap();
        let config = cpeal::adapters::LoraConfig {
            r: 4,
            alpha: 4.0,
            target_modules: vec!["q_proj".into(), "v_proj".into(), "fc1".into()],
            rslora: true,
            dropout: 0.25,
            modules_to_save: vec!["classifier".into()],
        };
        let mut adapter = LoraAdapter::fresh(&mut model, config, Some(5), seed).unwrap();
        let mut losses = Vec::new();
        let opts = options(8, 3, 0.5, seed);
        cpeal::train::train_image_classifier(&mut model, &mut adapter, &pixels, &labels, &opts, |l| {
            losses.push(l.loss)
        })
        .unwrap();
        (losses, adapter.tensors.iter().map(|(_, t)| t.to_vec().unwrap()).collect::<Vec<_>>())
    };
    let (losses, tensors) = run(11);
    assert_eq!(losses.len(), 16, "2 batches of 3 for 8 epochs");
    let first: f32 = losses[..4].iter().sum::<f32>();
    let last: f32 = losses[12..].iter().sum::<f32>();
    assert!(last < 0.7 * first, "losses {losses:?}");
    assert_eq!(run(11), (losses, tensors.clone()), "the same seed gives the same run");
    assert_ne!(run(12).1, tensors, "another seed, another run");
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_adapter() {
    let mut model = Model::load(&fixture("hf-tiny/dinov2")).unwrap();
    let step = fixture("train/dinov2_lora_step");
    let mut adapter = LoraAdapter::load(&step.join("adapter_init")).unwrap();
    let before: Vec<Vec<f32>> = adapter.tensors.iter().map(|(_, t)| t.to_vec().unwrap()).collect();
    let batch = step.join("batch.safetensors");
    let mut pixels = load(&batch, "pixel_values").to_vec().unwrap();
    pixels[5] = f32::NAN;
    let pixels = Tensor::from_vec(pixels, &[6, 3, 32, 32]).unwrap();
    let err = cpeal::train::train_image_classifier(
        &mut model,
        &mut adapter,
        &pixels,
        &batch_labels(&batch),
        &options(1, 6, 0.05, 1),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("loss is NaN at step 1"), "{err}");
    let after: Vec<Vec<f32>> = adapter.tensors.iter().map(|(_, t)| t.to_vec().unwrap()).collect();
    assert_eq!(after, before);
}

/// The CoOp trainer (images encoded once, prompts built by the tokenizer) takes PyTorch's step too.
#[test]
fn the_coop_trainer_takes_pytorchs_step() {
    use cpeal::train::coop::{encode_images, CoopPrompts, CONTEXT};
    let step = fixture("train/clip_coop_step");
    let batch = step.join("batch.safetensors");
    let model = Model::load(&fixture("hf-tiny/clip")).unwrap();
    let clip = model.clip().unwrap();
    let tokenizer = cpeal::tokenizer::ClipTokenizer::from_dir(fixture("hf-tiny/clip")).unwrap();
    let classnames: Vec<String> =
        std::fs::read_to_string(step.join("classnames.txt")).unwrap().lines().map(String::from).collect();
    let images = encode_images(clip, &load(&batch, "pixel_values"), 4, &cpeal::Device::Cpu).unwrap();
    let mut coop = CoopPrompts::new(clip, &tokenizer, &classnames, 4, images).unwrap();
    // The tokenizer's prompts are the fixture's, up to their end-of-text token.
    let (ids, shape) = cpeal::weights::SafetensorsFile::open(&batch).unwrap().get_i64("prompt_input_ids").unwrap();
    for (ours, theirs) in coop.prompts().iter().zip(ids.chunks(shape[1])) {
        let theirs: Vec<u32> = theirs[..ours.len()].iter().map(|&t| t as u32).collect();
        assert_eq!(ours, &theirs);
        assert_eq!(*ours.last().unwrap(), 49407);
    }
    let mut params = vec![(CONTEXT.to_string(), load(&step.join("adapter_init.safetensors"), CONTEXT))];
    let mut losses = Vec::new();
    cpeal::train::train(&mut coop, &mut params, &batch_labels(&batch), &options(1, 6, 0.1, 5), |l| losses.push(l.loss))
        .unwrap();
    let want = load(&step.join("expected.safetensors"), "loss").to_vec().unwrap()[0];
    assert!((losses[0] - want).abs() < 1e-5 * want, "{} vs {want}", losses[0]);
    let err = rel_err(&params[0].1, &load(&step.join("adapter_after_step.safetensors"), CONTEXT));
    assert!(err < 1e-4, "context after the step: {err}");
    assert_eq!(coop.fresh_context(true, 1).unwrap().shape(), &[5, 4, 48]);
}

/// LoRA on both CLIP towers end to end: the gradient of the calibrated loss along a random direction of every
/// LoRA factor equals the loss's central difference along it (both towers, causal text attention, quick-GELU,
/// the normalised embeddings and the logit scale all lie on the path).
#[test]
fn clip_lora_gradient_matches_the_loss_along_a_direction() {
    use cpeal::ops::{calibration_loss, CalibWeighting, CalibrationLoss};
    use cpeal::train::{clip_lora::ClipLora, Trainee};
    use rand::{Rng, SeedableRng};
    let step = fixture("train/clip_coop_step");
    let batch = step.join("batch.safetensors");
    let mut model = Model::load(&fixture("hf-tiny/clip")).unwrap();
    let config = cpeal::adapters::LoraConfig {
        r: 2,
        alpha: 2.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "fc1".into()],
        rslora: false,
        dropout: 0.0,
        modules_to_save: vec![],
    };
    let mut adapter = LoraAdapter::fresh(&mut model, config, None, 3).unwrap();
    assert!(
        adapter.tensors.iter().any(|(n, _)| n.contains("text_model"))
            && adapter.tensors.iter().any(|(n, _)| n.contains("vision_model"))
    );
    // B away from zero, so that A gets a gradient too.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for (name, t) in adapter.tensors.iter_mut() {
        if name.contains("lora_B") {
            *t = Tensor::from_vec((0..t.numel()).map(|_| rng.random_range(-0.2f32..0.2)).collect(), t.shape()).unwrap();
        }
    }
    let params = adapter.tensors.clone();
    let tokenizer = cpeal::tokenizer::ClipTokenizer::from_dir(fixture("hf-tiny/clip")).unwrap();
    let classnames: Vec<String> =
        std::fs::read_to_string(step.join("classnames.txt")).unwrap().lines().map(String::from).collect();
    let images = load(&batch, "pixel_values");
    let labels = batch_labels(&batch);
    let mut trainee = ClipLora::new(&mut model, &adapter, &tokenizer, &classnames, 4, &images).unwrap();
    let cfg = CalibrationLoss { weight: 1.0, weighting: CalibWeighting::Inter };
    let rows: Vec<usize> = (0..6).collect();
    let mut loss_at = |p: &[(String, Tensor)]| {
        let logits = trainee.logits(p, &rows, 0).unwrap();
        calibration_loss(&logits, &labels, &cfg).unwrap()
    };
    let vars: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.variable())).collect();
    let grads = cpeal::autograd::backward(&loss_at(&vars).loss).unwrap();
    let direction: Vec<Vec<f32>> =
        params.iter().map(|(_, t)| (0..t.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    let along: f64 = vars
        .iter()
        .zip(&direction)
        .map(|((_, v), d)| {
            grads.get(v).unwrap().to_vec().unwrap().iter().zip(d).map(|(g, d)| (*g * *d) as f64).sum::<f64>()
        })
        .sum();
    let h = 1e-2f32;
    let mut shifted = |sign: f32| {
        let p: Vec<(String, Tensor)> = params
            .iter()
            .zip(&direction)
            .map(|((n, t), d)| {
                let v: Vec<f32> = t.to_vec().unwrap().iter().zip(d).map(|(x, d)| x + sign * h * d).collect();
                (n.clone(), Tensor::from_vec(v, t.shape()).unwrap())
            })
            .collect();
        loss_at(&p).loss.to_vec().unwrap()[0] as f64
    };
    let central = (shifted(1.0) - shifted(-1.0)) / (2.0 * h as f64);
    eprintln!("directional derivative: backward {along:.6}, central difference {central:.6}");
    assert!(along.abs() > 1e-3, "a direction the loss depends on");
    assert!((along - central).abs() < 2e-2 * along.abs(), "backward {along} vs central difference {central}");
}
