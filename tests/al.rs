//! The active-learning runner (`cpeal run`): the protocol's invariants, resuming after a kill with the results
//! of an uninterrupted run, and clear errors on bad input that leave earlier results in place.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cpeal_bin, fixture};

const CLASSES: usize = 4;

/// 120 images of 4 classes: class k lights a 7-row band at rows 7k..7k+7, over seeded noise, so a head on
/// even a random backbone can tell them apart.
fn write_dataset(dir: &Path) {
    let labels: Vec<u8> = (0..120).map(|i| ((i * 7 + i / 5) % CLASSES) as u8).collect();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    common::write_idx_images(dir, &labels, |p| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let (image, row) = (p / 784, p % 784 / 28);
        let band = row / 7 == labels[image] as usize;
        (state % 60) as u8 + if band { 180 } else { 0 }
    });
}

/// An experiment over the tiny ViT: pool rows 0..80, test rows 80..120, `method` and `extra` TOML appended.
fn write_config(dir: &Path, method: &str, extra: &str) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_dataset(&data);
    let model = fixture("hf-tiny/vit");
    let text = format!(
        r#"title = "tiny"
model = "{}"
device = "cpu"
seeds = [3, 4]

[data]
idx = "data"
pool = [0, 80]
test = [80, 120]

[protocol]
rounds = 3
initial = 6
budget = 5

[method]
kind = "{method}"
r = 2

[train]
epochs = 3
batch_size = 4
lr = 0.05

[[arm]]
name = "random"
strategy = "random"
calib_loss = "none"

[[arm]]
name = "entropy+uc"
strategy = "entropy"
{extra}"#,
        model.display()
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn cpeal_run(config: &Path, out: &Path) -> Output {
    Command::new(cpeal_bin()).args(["run", "--json", "--config"]).arg(config).arg("--out").arg(out).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn rows(path: &Path) -> Vec<usize> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn runs_every_arm_and_seed_through_the_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "head", "");
    let out = tmp.path().join("run");
    let o = cpeal_run(&config, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    // One JSON line per round, 2 arms × 2 seeds × 3 rounds.
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 12);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13, "{csv}");
    for seed in [3, 4] {
        let initial = rows(&out.join(format!("selected/random_seed{seed}_round0.txt")));
        assert_eq!(initial, rows(&out.join(format!("selected/entropy+uc_seed{seed}_round0.txt"))), "same start");
        assert_eq!(initial.len(), 6);
        for arm in ["random", "entropy+uc"] {
            let mut seen = HashSet::new();
            for round in 0..3 {
                let picked = rows(&out.join(format!("selected/{arm}_seed{seed}_round{round}.txt")));
                assert_eq!(picked.len(), if round == 0 { 6 } else { 5 });
                assert!(picked.iter().all(|&r| r < 80 && seen.insert(r)), "{arm} {seed} {round}: {picked:?}");
                let record: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(out.join(format!("rounds/{arm}_seed{seed}_round{round}.json"))).unwrap(),
                )
                .unwrap();
                assert_eq!(record["labelled"], seen.len());
                assert_eq!(record["metrics"]["samples"], 40);
            }
        }
    }
    assert_ne!(
        rows(&out.join("selected/random_seed3_round0.txt")),
        rows(&out.join("selected/random_seed4_round0.txt"))
    );
    for report in ["summary.md", "curves.svg", "timings.csv", "experiment.toml", "cache/features.safetensors"] {
        assert!(out.join(report).exists(), "{report}");
    }
}

/// The entropy arm picks, among the unlabelled, the images of highest entropy under the round's model: checked
/// with a head fitted by the library on the same cached features and an entropy computed here.
#[test]
fn the_entropy_arm_picks_the_most_uncertain_unlabelled_images() {
    use cpeal::al::learner::{FrozenFeatures, HeadLearner, Learner};
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "head", "calib_loss = \"uc\"\n");
    let out = tmp.path().join("run");
    let mut exp = cpeal::al::Experiment::read(&config).unwrap();
    exp.protocol.pcb = false;
    exp.protocol.rounds = 2;
    exp.seeds = vec![3];
    cpeal::al::run(&exp, &config, &out, |_| {}).unwrap();

    let model = cpeal::models::Model::load(&exp.model).unwrap();
    let pre = cpeal::preprocess::Preprocessor::for_model(&model, &exp.model).unwrap();
    let data = cpeal::al::data::Dataset::load(&exp.data, pre, &config).unwrap();
    let cache = out.join("cache/features.safetensors");
    let frozen = FrozenFeatures::new(&model, &data, &cpeal::Device::Cpu, 16, &cache).unwrap();
    let mut head = HeadLearner::new(frozen, data.classes);
    let labelled = rows(&out.join("selected/entropy+uc_seed3_round0.txt"));
    let arm = &exp.arms[1];
    let opts = exp.train_options(arm, cpeal::al::runner::derive_seed(3, 0, 1));
    head.fit(&labelled, &data.labels_of(&labelled), &opts, cpeal::al::runner::derive_seed(3, 0, 1)).unwrap();
    let logits = head.predict(&data.pool_rows()).unwrap().logits;
    let entropy = |z: &[f32]| {
        let m = z.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        -e.iter().map(|x| x / s * (x / s).ln()).sum::<f64>()
    };
    let mut ranked: Vec<(f64, usize)> = logits
        .chunks(CLASSES)
        .enumerate()
        .filter(|(i, _)| !labelled.contains(i))
        .map(|(i, z)| (entropy(z), i))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut expected: Vec<usize> = ranked[..5].iter().map(|&(_, i)| i).collect();
    let mut picked = rows(&out.join("selected/entropy+uc_seed3_round1.txt"));
    expected.sort();
    picked.sort();
    assert_eq!(picked, expected);
}

/// Killed with SIGKILL while it runs, then run again: the same metrics and picks as an uninterrupted run.
#[test]
fn a_killed_run_resumes_to_the_results_of_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "lora", "");
    let whole = tmp.path().join("whole");
    assert!(cpeal_run(&config, &whole).status.success());

    let resumed = tmp.path().join("resumed");
    let mut child = Command::new(cpeal_bin())
        .args(["run", "--json", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&resumed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let records = resumed.join("rounds");
    // Completed rounds: a kill mid-write may also leave a `.partial` file.
    let completed = || {
        std::fs::read_dir(&records)
            .map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json")).count())
    };
    while child.try_wait().unwrap().is_none() && completed() < 4 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().unwrap();
    let before = completed();
    let o = cpeal_run(&config, &resumed);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(before < 12, "the run finished before it was killed ({before} records)");
    let lines = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(lines, 12 - before, "the resumed run redid completed rounds");
    for file in ["metrics.csv", "selected/entropy+uc_seed4_round2.txt", "selected/random_seed4_round1.txt"] {
        assert_eq!(std::fs::read(whole.join(file)).unwrap(), std::fs::read(resumed.join(file)).unwrap(), "{file}");
    }
}

/// A round whose record was never written (a kill mid-write leaves only a `.partial` file) is redone.
#[test]
fn a_round_without_its_record_is_redone_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "head", "");
    let out = tmp.path().join("run");
    assert!(cpeal_run(&config, &out).status.success());
    let metrics = std::fs::read(out.join("metrics.csv")).unwrap();
    let last = out.join("rounds/entropy+uc_seed4_round2.json");
    std::fs::rename(&last, out.join("rounds/entropy+uc_seed4_round2.json.partial")).unwrap();
    std::fs::remove_file(out.join("rounds/entropy+uc_seed4_round1.json")).unwrap();
    let o = cpeal_run(&config, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), metrics);
}

fn run_err(config: &Path, out: &Path) -> String {
    let o = cpeal_run(config, out);
    assert!(!o.status.success(), "expected a failure");
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_configs_name_the_file_and_key_at_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let config = write_config(tmp.path(), "head", "colour = \"red\"\n");
    let err = run_err(&config, &out);
    assert!(err.contains("exp.toml") && err.contains("colour"), "{err}");

    let config = write_config(tmp.path(), "head", "strategy2 = 1\n");
    assert!(run_err(&config, &out).contains("strategy2"));

    let text = std::fs::read_to_string(write_config(tmp.path(), "head", "")).unwrap();
    let cases = [
        ("budget = 5", "budget = 50", "protocol"),
        ("test = [80, 120]", "test = [70, 120]", "overlap"),
        ("pool = [0, 80]", "pool = [0, 0]", "empty"),
        ("test = [80, 120]", "test = [80, 121]", "data.test"),
        ("strategy = \"entropy\"", "strategy = \"entropi\"", "unknown strategy"),
        ("kind = \"head\"", "kind = \"vpt\"", "vpt"),
        ("[protocol]", "[protocol]\ncandidates = 1.5", "candidates"),
    ];
    for (old, new, expected) in cases {
        std::fs::write(&config, text.replace(old, new)).unwrap();
        let err = run_err(&config, &out);
        assert!(err.contains(expected), "{new}: {err}");
    }
    assert!(!out.join("rounds").exists(), "a refused config started a run");
}

#[test]
fn labels_outside_the_class_list_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "head", "");
    let text = std::fs::read_to_string(&config).unwrap().replace("test = [80, 120]", "test = [80, 120]\nclasses = 3");
    std::fs::write(&config, text).unwrap();
    let err = run_err(&config, &tmp.path().join("run"));
    assert!(err.contains("t10k-labels-idx1-ubyte") && err.contains("label 3"), "{err}");
}

#[test]
fn damaged_state_is_reported_and_earlier_results_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "head", "");
    let out = tmp.path().join("run");
    assert!(cpeal_run(&config, &out).status.success());
    let metrics = std::fs::read(out.join("metrics.csv")).unwrap();

    // Another experiment in the same directory.
    let other = std::fs::read_to_string(&config).unwrap().replace("rounds = 3", "rounds = 4");
    let other_config = tmp.path().join("other.toml");
    std::fs::write(&other_config, other).unwrap();
    assert!(run_err(&other_config, &out).contains("different experiment"));

    // A damaged round record, then a damaged feature cache.
    let record = out.join("rounds/random_seed3_round1.json");
    let kept = std::fs::read(&record).unwrap();
    std::fs::write(&record, b"{\"arm\": ").unwrap();
    let err = run_err(&config, &out);
    assert!(err.contains("random_seed3_round1.json"), "{err}");
    std::fs::write(&record, kept).unwrap();
    let cache = out.join("cache/features.safetensors");
    std::fs::write(&cache, b"not a safetensors file").unwrap();
    let err = run_err(&config, &out);
    assert!(err.contains("features.safetensors") && err.contains("delete it"), "{err}");
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), metrics, "results were lost");
    assert_eq!(std::fs::read_dir(out.join("rounds")).unwrap().count(), 12);
}

#[test]
fn the_shipped_configs_are_valid_experiments() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") && !path.to_string_lossy().contains(".local-") {
            let exp = cpeal::al::Experiment::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(exp.model.parent().unwrap().ends_with("assets"), "{}: a model under assets/", path.display());
            read += 1;
        }
    }
    assert!(read >= 3, "configs/ holds {read} experiments");
}

/// The device path: frozen features (head) and the merged adapted model (LoRA) computed on the emulated GPU agree
/// with the CPU's within bf16 tolerance.
#[cfg(feature = "cuda-emu")]
#[test]
fn on_the_emulated_gpu_the_forwards_match_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let run_on = |device: &str, method: &str| {
        let dir = tmp.path().join(format!("{device}-{method}"));
        let config = write_config(&dir, method, "");
        let mut exp = cpeal::al::Experiment::read(&config).unwrap();
        (exp.device, exp.seeds, exp.protocol.rounds) = (device.to_string(), vec![3], 1);
        (exp.data.pool, exp.data.test) = (Some([0, 12]), Some([80, 100])); // the emulator runs a few images a second
        let records = cpeal::al::run(&exp, &config, &dir.join("run"), |_| {}).unwrap();
        (dir.join("run"), records)
    };
    let features = |dir: &Path| common::load(&dir.join("cache/features.safetensors"), "features");
    let (cpu, _) = run_on("cpu", "head");
    let (emu, first) = run_on("cuda-emu", "head");
    let rel = common::rel_err(&features(&emu), &features(&cpu));
    assert!(rel < 1e-2, "frozen features on cuda-emu: rel {rel:.2e}");
    let (_, again) = run_on("cuda-emu", "head"); // a resume: the features come from the cache
    assert_eq!(again, first);

    let (_, cpu) = run_on("cpu", "lora");
    let (_, emu) = run_on("cuda-emu", "lora");
    for (c, e) in cpu.iter().zip(&emu) {
        let (c, e) = (&c.metrics, &e.metrics);
        assert!((c.nll - e.nll).abs() / c.nll < 2e-2, "{}: NLL {} on the CPU, {} on cuda-emu", c.samples, c.nll, e.nll);
        assert!((c.accuracy - e.accuracy).abs() <= 2.0 / 20.0, "accuracy {} vs {}", c.accuracy, e.accuracy);
    }
}

/// A margin experiment on the tiny ViT over `common::write_image_dataset`'s images, with `data` as the source.
fn image_config(dir: &Path, data: &str) -> PathBuf {
    let text = format!(
        "model = \"{}\"\ndevice = \"cpu\"\nseeds = [1]\n[data]\n{data}\n[protocol]\nrounds = 2\ninitial = 3\n\
         budget = 3\n[train]\nepochs = 2\nbatch_size = 4\n[[arm]]\nname = \"margin\"\nstrategy = \"margin\"\n",
        fixture("hf-tiny/vit").display()
    );
    let name = ["split", "csv"].into_iter().find(|n| data.contains(n)).unwrap_or("folders");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `split.json`'s lists as CSV files in `dir/lists/` (paths relative to `dir`, quoted; a byte-order mark and an
/// extra column).
fn write_csv_lists(dir: &Path) {
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("split.json")).unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    for (key, file) in [("train", "pool.csv"), ("test", "test.csv")] {
        let mut text = String::from("\u{feff}path,source,label,classname\n"); // as spreadsheets export it
        for e in split[key].as_array().unwrap() {
            text += &format!("\"{}\",camera 1,{},{}\n", e[0].as_str().unwrap(), e[1], e[2].as_str().unwrap());
        }
        std::fs::write(dir.join("lists").join(file), text).unwrap();
    }
}

#[test]
fn split_files_class_folders_and_csv_files_feed_the_same_experiment() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    write_csv_lists(tmp.path());
    let by_split = image_config(tmp.path(), "split_file = \"split.json\"");
    let by_folders = image_config(tmp.path(), "pool_folder = \"pool\"\ntest_folder = \"test\"");
    let by_csv =
        image_config(tmp.path(), "pool_csv = \"lists/pool.csv\"\ntest_csv = \"lists/test.csv\"\nimage_root = \".\"");
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    for (config, out) in [(&by_split, &a), (&by_folders, &b), (&by_csv, &c)] {
        let o = cpeal_run(config, out);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let pool = std::fs::read_to_string(a.join("pool.txt")).unwrap();
    assert_eq!(pool.lines().count(), 18);
    assert!(pool.lines().nth(6).unwrap().ends_with("pool/moss/0.png"), "{pool}");
    assert_eq!(std::fs::read_to_string(b.join("pool.txt")).unwrap(), pool);
    assert_eq!(std::fs::read_to_string(c.join("pool.txt")).unwrap(), pool);
    let picks = rows(&a.join("selected/margin_seed1_round1.txt"));
    assert!(picks.len() == 3 && picks.iter().all(|&r| r < 18));
    let metrics = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    assert_eq!(std::fs::read_to_string(b.join("metrics.csv")).unwrap(), metrics);
    assert_eq!(std::fs::read_to_string(c.join("metrics.csv")).unwrap(), metrics);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("rounds/margin_seed1_round0.json")).unwrap()).unwrap();
    assert_eq!(record["metrics"]["samples"], 9);
}

#[test]
fn a_missing_image_or_unknown_class_folder_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_image_dataset(tmp.path());
    std::fs::remove_file(tmp.path().join("test/sky/2.png")).unwrap();
    let err = run_err(&image_config(tmp.path(), "split_file = \"split.json\""), &tmp.path().join("a"));
    assert!(err.contains("test/sky/2.png"), "{err}");

    std::fs::create_dir_all(tmp.path().join("test/stone")).unwrap();
    std::fs::copy(tmp.path().join("test/sky/1.png"), tmp.path().join("test/stone/0.png")).unwrap();
    let err =
        run_err(&image_config(tmp.path(), "pool_folder = \"pool\"\ntest_folder = \"test\""), &tmp.path().join("b"));
    assert!(err.contains("stone"), "{err}");
    let err = run_err(
        &image_config(tmp.path(), "split_file = \"split.json\"\npool_folder = \"pool\""),
        &tmp.path().join("c"),
    );
    assert!(err.contains("exactly one"), "{err}");

    write_csv_lists(tmp.path());
    let csv = "pool_csv = \"lists/pool.csv\"\ntest_csv = \"lists/test.csv\"\nimage_root = \".\"";
    let pool = tmp.path().join("lists/pool.csv");
    let text = std::fs::read_to_string(&pool).unwrap();
    std::fs::write(&pool, text.replacen(",1,moss", ",one,moss", 1)).unwrap();
    let err = run_err(&image_config(tmp.path(), csv), &tmp.path().join("d"));
    assert!(err.contains("pool.csv") && err.contains("line 8") && err.contains("`one`"), "{err}");
    std::fs::write(&pool, text.replacen(",1,moss", ",4000000000,moss", 1)).unwrap();
    let err = run_err(&image_config(tmp.path(), csv), &tmp.path().join("f"));
    assert!(err.contains("a label of 4000000000"), "{err}");
    std::fs::write(&pool, text.replace("path,source,label", "file,source,label")).unwrap();
    let err = run_err(&image_config(tmp.path(), csv), &tmp.path().join("e"));
    assert!(err.contains("pool.csv") && err.contains("`path`"), "{err}");
}
