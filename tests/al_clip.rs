//! The runner's CLIP methods on the tiny CLIPModel: CoOp (`method.kind = "coop"`) and LoRA on both towers
//! (`"lora"`). Their predictions against the same training done directly through the library, the class names
//! taken from each data source, and the errors that come before anything is computed or written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cpeal_bin, fixture};
use cpeal::al::coop::{check_model, CoopLearner, PromptSettings};
use cpeal::al::data::Dataset;
use cpeal::al::learner::{FrozenFeatures, Learner};
use cpeal::al::Experiment;
use cpeal::models::Model;
use cpeal::preprocess::Preprocessor;
use cpeal::tokenizer::ClipTokenizer;
use cpeal::train::coop::{CoopPrompts, CONTEXT};
use cpeal::{train, Device, Tensor};

/// A CoOp experiment on the images of `common::write_image_dataset` in `dir`, with `data` as its source.
fn coop_config(dir: &Path, name: &str, model: &Path, data: &str) -> PathBuf {
    let text = format!(
        r#"model = "{}"
device = "cpu"
seeds = [5]

[data]
{data}

[protocol]
rounds = 2
initial = 3
budget = 3

[method]
kind = "coop"
n_ctx = 4

[train]
epochs = 3
batch_size = 4
lr = 0.05

[[arm]]
name = "entropy+uc"
strategy = "entropy"

[[arm]]
name = "random"
strategy = "random"
calib_loss = "none"
"#,
        model.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn clip() -> PathBuf {
    fixture("hf-tiny/clip")
}

fn cpeal_run(config: &Path, out: &Path) -> Output {
    Command::new(cpeal_bin()).args(["run", "--json", "--config"]).arg(config).arg("--out").arg(out).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Mean cross-entropy of `logits` `[n, c]` against `labels`, in f64.
fn cross_entropy(logits: &[f32], labels: &[usize]) -> f64 {
    let c = logits.len() / labels.len();
    let rows = logits.chunks(c).zip(labels);
    let nll: f64 = rows
        .map(|(z, &y)| {
            let max = z.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
            let lse = max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            lse - z[y] as f64
        })
        .sum();
    nll / labels.len() as f64
}

#[test]
fn the_learner_predicts_with_the_prompts_that_training_on_the_labelled_embeddings_gives() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    let config = coop_config(tmp.path(), "split", &clip(), "split_file = \"split.json\"");
    let exp = Experiment::read(&config).unwrap();
    let model = Model::load(&exp.model).unwrap();
    let data = Dataset::load(&exp.data, Preprocessor::for_model(&model, &exp.model).unwrap(), &config).unwrap();
    let settings = PromptSettings { classnames: data.classnames.clone().unwrap(), n_ctx: 4, class_specific: true };
    let tokenizer = check_model(&model, &exp.model, &settings, "CoOp").unwrap();
    // Features computed 5 rows at a time and cached; the direct path below encodes each set at once.
    let frozen = FrozenFeatures::new(&model, &data, &Device::Cpu, 5, &tmp.path().join("features.safetensors")).unwrap();
    let mut learner = CoopLearner::new(model, tokenizer, frozen, settings.clone());
    let (rows, test) = ([0usize, 7, 13, 2, 9, 16, 4], data.test_rows());
    let labels = data.labels_of(&rows);
    let opts = exp.train_options(&exp.arms[0], 11);
    learner.fit(&rows, &labels, &opts, 42).unwrap();
    let got = learner.predict(&test).unwrap();

    let model = Model::load(&exp.model).unwrap();
    let clip = model.clip().unwrap();
    let embed = |rows: &[usize]| clip.forward_images(&data.pixels(rows).unwrap()).unwrap().image_embeds.unwrap();
    let tokenizer = ClipTokenizer::from_dir(&exp.model).unwrap();
    let mut prompts = CoopPrompts::new(clip, &tokenizer, &settings.classnames, 4, embed(&rows)).unwrap();
    let fresh = prompts.fresh_context(true, 42).unwrap();
    let mut params = vec![(CONTEXT.to_string(), fresh.clone())];
    train::train(&mut prompts, &mut params, &labels, &opts, |_| {}).unwrap();
    let logits = |ctx: &Tensor, images: &Tensor| {
        clip.logits_per_image(images, &prompts.text_embeds(ctx).unwrap()).unwrap().to_vec().unwrap()
    };
    let test_embeds = embed(&test);
    assert_eq!(got.dim, 24);
    assert!(rel_err(&got.features, &test_embeds.to_vec().unwrap()) < 1e-5, "features are the image embeddings");
    let want = logits(&params[0].1, &test_embeds);
    let err = rel_err(&got.logits, &want);
    assert!(err < 1e-4, "logits: relative error {err}");
    // Training moved the context: the labelled rows fit better than with the context it started from.
    let train_embeds = embed(&rows);
    let (before, after) = (logits(&fresh, &train_embeds), logits(&params[0].1, &train_embeds));
    let (ce_before, ce_after) = (cross_entropy(&before, &labels), cross_entropy(&after, &labels));
    assert!(ce_after < ce_before, "cross-entropy on the labelled rows {ce_before} -> {ce_after}");
}

#[test]
fn split_files_folders_and_given_names_prompt_with_the_same_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    let named = "classnames = [\"apple\", \"moss\", \"sky\"]";
    let configs = [
        coop_config(tmp.path(), "split", &clip(), "split_file = \"split.json\""),
        coop_config(tmp.path(), "folders", &clip(), "pool_folder = \"pool\"\ntest_folder = \"test\""),
        coop_config(tmp.path(), "named", &clip(), &format!("split_file = \"split.json\"\n{named}")),
        coop_config(
            tmp.path(),
            "renamed",
            &clip(),
            "split_file = \"split.json\"\nclassnames = [\"ox\", \"elm\", \"fig\"]",
        ),
    ];
    let mut metrics = Vec::new();
    for config in &configs {
        let out = tmp.path().join(config.file_stem().unwrap());
        let o = cpeal_run(config, &out);
        assert!(o.status.success(), "{}", stderr(&o));
        let records = std::fs::read_dir(out.join("rounds")).unwrap().count();
        assert_eq!(records, 2 * 2, "two arms of two rounds");
        metrics.push(std::fs::read_to_string(out.join("metrics.csv")).unwrap());
    }
    assert_eq!(metrics[1], metrics[0], "the folders' names are the split file's");
    assert_eq!(metrics[2], metrics[0], "the split file's names are apple, moss, sky in label order");
    assert_ne!(metrics[3], metrics[0], "other names make other prompts");

    // Run again: every round is on disk, nothing is redone.
    let again = cpeal_run(&configs[0], &tmp.path().join("split"));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(tmp.path().join("split/metrics.csv")).unwrap(), metrics[0]);
}

#[test]
fn a_clip_head_probes_the_image_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    let config = coop_config(tmp.path(), "probe", &clip(), "split_file = \"split.json\"");
    let text = std::fs::read_to_string(&config).unwrap().replace("kind = \"coop\"\nn_ctx = 4", "kind = \"head\"");
    std::fs::write(&config, text).unwrap();
    let out = tmp.path().join("probe");
    let o = cpeal_run(&config, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let cache = cpeal::weights::SafetensorsFile::open(&out.join("cache/features.safetensors")).unwrap();
    assert_eq!(cache.get("features", None).unwrap().shape(), [18 + 9, 24], "pool and test rows, 24-wide embeddings");
}

#[test]
fn coop_without_class_names_or_clip_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    let idx_dir = tmp.path().join("idx");
    std::fs::create_dir_all(&idx_dir).unwrap();
    common::write_idx_split(&idx_dir, &[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], 7);
    let idx = "idx = \"idx\"\npool = [0, 8]\ntest = [8, 12]";
    let cases = [
        (coop_config(tmp.path(), "unnamed", &clip(), idx), "data.classnames"),
        (
            coop_config(tmp.path(), "short", &clip(), &format!("{idx}\nclassnames = [\"a\", \"b\"]")),
            "2 names for 3 classes",
        ),
        (coop_config(tmp.path(), "vit", &fixture("hf-tiny/vit"), "split_file = \"split.json\""), "CLIP checkpoint"),
        (
            coop_config(tmp.path(), "vision-only", &fixture("hf-tiny/clip_vision"), "split_file = \"split.json\""),
            "CLIP",
        ),
    ];
    for (config, want) in cases {
        let out = tmp.path().join(config.file_stem().unwrap());
        let o = cpeal_run(&config, &out);
        assert!(!o.status.success(), "{} ran", config.display());
        let err = stderr(&o);
        assert!(err.contains(want), "{}: {err}", config.display());
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.join("experiment.toml").exists(), "{}: the run directory was written", config.display());
    }
}

/// `coop_config` with LoRA on both towers instead (r 2, 4 "X"s before each class name).
fn clip_lora_config(dir: &Path, name: &str, data: &str) -> PathBuf {
    let config = coop_config(dir, name, &clip(), data);
    let text = std::fs::read_to_string(&config).unwrap().replace("kind = \"coop\"", "kind = \"lora\"\nr = 2");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn clip_lora_predicts_with_the_adapted_towers_that_training_gives() {
    use cpeal::adapters::{LoraAdapter, LoraConfig};
    use cpeal::al::clip_lora::ClipLoraLearner;
    use cpeal::train::clip_lora::{fixed_prompt_ids, ClipLora};

    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    let config = clip_lora_config(tmp.path(), "lora", "split_file = \"split.json\"");
    let exp = Experiment::read(&config).unwrap();
    let model = Model::load(&exp.model).unwrap();
    let data = std::sync::Arc::new(
        Dataset::load(&exp.data, Preprocessor::for_model(&model, &exp.model).unwrap(), &config).unwrap(),
    );
    let settings = PromptSettings { classnames: data.classnames.clone().unwrap(), n_ctx: 4, class_specific: true };
    let tokenizer = check_model(&model, &exp.model, &settings, "LoRA on CLIP").unwrap();
    let lora = LoraConfig { modules_to_save: Vec::new(), ..exp.lora_config() };
    let mut learner = ClipLoraLearner::new(
        model,
        &exp.model,
        tokenizer,
        settings.clone(),
        exp.lora_config(),
        data.clone(),
        Device::Cpu,
        4,
    );
    let (rows, test) = ([1usize, 8, 14, 3, 10, 17], data.test_rows());
    let labels = data.labels_of(&rows);
    let opts = exp.train_options(&exp.arms[0], 5);
    learner.fit(&rows, &labels, &opts, 77).unwrap();
    let got = learner.predict(&test).unwrap();

    let mut model = Model::load(&exp.model).unwrap();
    let adapter = LoraAdapter::fresh(&mut model, lora, None, 77).unwrap();
    adapter.attach(&mut model, false).unwrap();
    let tokenizer = ClipTokenizer::from_dir(&exp.model).unwrap();
    let images = data.pixels(&rows).unwrap();
    let mut params = adapter.tensors.clone();
    let mut trainee = ClipLora::new(&mut model, &adapter, &tokenizer, &settings.classnames, 4, &images).unwrap();
    train::train(&mut trainee, &mut params, &labels, &opts, |_| {}).unwrap();
    let clip = model.clip().unwrap();
    let prompts = fixed_prompt_ids(&tokenizer, &settings.classnames, 4).unwrap();
    let text = clip.forward_texts(&prompts).unwrap().text_embeds.unwrap();
    let logits = |rows: &[usize]| {
        let images = clip.forward_images(&data.pixels(rows).unwrap()).unwrap().image_embeds.unwrap();
        (clip.logits_per_image(&images, &text).unwrap().to_vec().unwrap(), images.to_vec().unwrap())
    };
    let (want, features) = logits(&test);
    assert_eq!(got.dim, 24);
    assert!(rel_err(&got.features, &features) < 1e-5, "features are the adapted image embeddings");
    let err = rel_err(&got.logits, &want);
    assert!(err < 1e-4, "logits: relative error {err}");
    assert!(params
        .iter()
        .any(|(name, t)| name.contains("text_model") && t.to_vec().unwrap().iter().any(|&v| v != 0.0)));

    // Training moved the factors: the labelled rows fit better than with the fresh ones (B = 0: the checkpoint).
    let (after, _) = logits(&rows);
    let base = Model::load(&exp.model).unwrap();
    let fresh = base.clip().unwrap();
    let base_images = fresh.forward_images(&images).unwrap().image_embeds.unwrap();
    let base_text = fresh.forward_texts(&prompts).unwrap().text_embeds.unwrap();
    let before = fresh.logits_per_image(&base_images, &base_text).unwrap().to_vec().unwrap();
    let (ce_before, ce_after) = (cross_entropy(&before, &labels), cross_entropy(&after, &labels));
    assert!(ce_after < ce_before, "cross-entropy on the labelled rows {ce_before} -> {ce_after}");
}

#[test]
fn clip_lora_runs_the_protocol_and_needs_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    let config = clip_lora_config(tmp.path(), "lora", "pool_folder = \"pool\"\ntest_folder = \"test\"");
    let out = tmp.path().join("lora");
    let o = cpeal_run(&config, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(out.join("rounds")).unwrap().count(), 2 * 2, "two arms of two rounds");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 2 * 2, "{metrics}");

    let idx_dir = tmp.path().join("idx");
    std::fs::create_dir_all(&idx_dir).unwrap();
    common::write_idx_split(&idx_dir, &[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], 7);
    let unnamed = clip_lora_config(tmp.path(), "unnamed", "idx = \"idx\"\npool = [0, 8]\ntest = [8, 12]");
    let o = cpeal_run(&unnamed, &tmp.path().join("unnamed"));
    assert!(!o.status.success() && stderr(&o).contains("data.classnames"), "{}", stderr(&o));
    assert!(!tmp.path().join("unnamed/experiment.toml").exists());
}

/// The device path of LoRA on CLIP: both towers' factors merged into the weights of the model on the emulated GPU
/// give the CPU's predictions within bf16 tolerance.
#[cfg(feature = "cuda-emu")]
#[test]
fn clip_lora_on_the_emulated_gpu_matches_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    let run_on = |device: &str| {
        let config = clip_lora_config(tmp.path(), device, "split_file = \"split.json\"");
        let mut exp = Experiment::read(&config).unwrap();
        (exp.device, exp.arms) = (device.to_string(), exp.arms[..1].to_vec());
        cpeal::al::run(&exp, &config, &tmp.path().join(device), |_| {}).unwrap()
    };
    let (cpu, emu) = (run_on("cpu"), run_on("cuda-emu"));
    assert_eq!(cpu.len(), 2);
    for (c, e) in cpu.iter().zip(&emu) {
        let (c, e) = (&c.metrics, &e.metrics);
        assert!((c.nll - e.nll).abs() / c.nll < 2e-2, "{}: NLL {} on the CPU, {} on cuda-emu", c.samples, c.nll, e.nll);
        assert!((c.accuracy - e.accuracy).abs() <= 1.0 / 9.0, "accuracy {} vs {}", c.accuracy, e.accuracy);
    }
}
