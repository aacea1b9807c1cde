//! `cpeal select` end to end: file formats, the output contract, and a clear error (not a panic) for each kind of
//! bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_values(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| (rng.random::<f32>() - 0.5) * 6.0).collect()
}

/// A safetensors file with one tensor, written by hand so that any dtype can be produced.
fn write_safetensors(path: &Path, name: &str, dtype: &str, shape: &[usize], data: &[u8]) {
    let header = format!(r#"{{"{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[0,{}]}}}}"#, data.len());
    let mut header = header.into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A version-1 `.npy` file.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

struct Run {
    ok: bool,
    stderr: String,
    out: Vec<usize>,
}

fn cpeal_select(dir: &Path, args: &[&str]) -> Run {
    let out = dir.join("out.txt");
    let _ = std::fs::remove_file(&out);
    let result =
        Command::new(env!("CARGO_BIN_EXE_cpeal")).arg("select").args(args).arg("--out").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let out = std::fs::read_to_string(&out).unwrap_or_default().lines().map(|l| l.parse().unwrap()).collect();
    Run { ok: result.status.success(), stderr, out }
}

fn entropy_reference(logits: &[f32], c: usize, labeled: &[usize], k: usize) -> Vec<usize> {
    let scores: Vec<f64> = logits
        .chunks(c)
        .map(|r| {
            let max = r.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = r.iter().map(|&v| (v as f64 - max).exp()).collect();
            let s: f64 = e.iter().sum();
            -e.iter().map(|v| v / s).map(|p| p * p.ln()).sum::<f64>()
        })
        .collect();
    let mut idx: Vec<usize> = (0..scores.len()).filter(|i| !labeled.contains(i)).collect();
    idx.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

struct Pool {
    dir: tempfile::TempDir,
    logits: Vec<f32>,
    n: usize,
    c: usize,
    d: usize,
}

impl Pool {
    fn new() -> Pool {
        let (n, c, d) = (120, 5, 6);
        let dir = tempfile::tempdir().unwrap();
        let logits = random_values(n * c, 1);
        write_safetensors(&dir.path().join("l.safetensors"), "logits", "F32", &[n, c], &f32_bytes(&logits));
        let features = random_values(n * d, 2);
        write_npy(&dir.path().join("f.npy"), "<f4", &[n, d], &f32_bytes(&features));
        std::fs::write(dir.path().join("idx.txt"), "3\n7\n\n11\n").unwrap();
        std::fs::write(dir.path().join("lab.txt"), "0\n1\n1\n").unwrap();
        Pool { dir, logits, n, c, d }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Run {
        cpeal_select(self.dir.path(), args)
    }
}

#[test]
fn entropy_cli_matches_reference_and_writes_scores() {
    let pool = Pool::new();
    let (l, idx, scores) = (pool.path("l.safetensors"), pool.path("idx.txt"), pool.path("s.safetensors"));
    let run =
        pool.run(&["--strategy", "entropy", "--budget", "9", "--logits", &l, "--labeled", &idx, "--scores", &scores]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.out, entropy_reference(&pool.logits, pool.c, &[3, 7, 11], 9));
    let file = cpeal::weights::SafetensorsFile::open(Path::new(&scores)).unwrap();
    let t = file.get("scores", Some(&[pool.n])).unwrap();
    let values = t.cpu_slice().unwrap();
    assert!(values[3].is_nan() && values[0].is_finite() && values[0] > 0.0);
}

#[test]
fn npy_and_half_precision_inputs_give_the_same_choice() {
    let pool = Pool::new();
    let (n, c) = (pool.n, pool.c);
    // Values exactly representable in f16 and bf16 so every format holds the same numbers.
    let logits: Vec<f32> = pool.logits.iter().map(|&v| (v * 8.0).round() / 8.0).collect();
    let expected = entropy_reference(&logits, c, &[], 10);
    write_npy(&pool.file("a.npy"), "<f4", &[n, c], &f32_bytes(&logits));
    let f64s: Vec<u8> = logits.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect();
    write_npy(&pool.file("b.npy"), "<f8", &[n, c], &f64s);
    let f16s: Vec<u8> = logits.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    write_npy(&pool.file("c.npy"), "<f2", &[n, c], &f16s);
    write_safetensors(&pool.file("d.safetensors"), "logits", "F16", &[n, c], &f16s);
    let bf16s: Vec<u8> = logits.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    write_safetensors(&pool.file("e.safetensors"), "logits", "BF16", &[n, c], &bf16s);
    for name in ["a.npy", "b.npy", "c.npy", "d.safetensors", "e.safetensors"] {
        let run = pool.run(&["--strategy", "entropy", "--budget", "10", "--logits", &pool.path(name)]);
        assert!(run.ok, "{name}: {}", run.stderr);
        assert_eq!(run.out, expected, "{name}");
    }
}

#[test]
fn feature_strategies_and_pcb_run_from_files() {
    let pool = Pool::new();
    let (l, f, idx, lab) = (pool.path("l.safetensors"), pool.path("f.npy"), pool.path("idx.txt"), pool.path("lab.txt"));
    for strategy in ["coreset", "badge", "featdist", "random", "margin", "least-confidence"] {
        let base = ["--strategy", strategy, "--budget", "7", "--logits", &l, "--features", &f];
        let labelled = ["--labeled", &idx, "--labels", &lab, "--seed", "4"];
        let run = pool.run(&[&base[..], &labelled[..]].concat());
        assert!(run.ok, "{strategy}: {}", run.stderr);
        assert_eq!(run.out.len(), 7);
        // The greedy strategies report their picks (JSON lines: stderr is not a terminal here).
        let last = r#"{"event":"progress","done":7,"total":7}"#;
        assert_eq!(run.stderr.contains(last), ["coreset", "badge"].contains(&strategy), "{strategy}: {}", run.stderr);
        assert!(run.out.iter().all(|i| ![3, 7, 11].contains(i) && *i < pool.n));
        let again = pool.run(&[&base[..], &labelled[..], &["--pcb", "--candidates", "0.5"]].concat());
        assert!(again.ok, "{strategy} --pcb: {}", again.stderr);
        assert_eq!(again.out, pool.run(&[&base[..], &labelled[..], &["--pcb", "--candidates", "0.5"]].concat()).out);
    }
    let _ = pool.d;
}

#[test]
fn mc_samples_drive_bald() {
    let pool = Pool::new();
    let (t, n, c) = (4, pool.n, pool.c);
    write_safetensors(
        &pool.file("mc.safetensors"),
        "logits",
        "F32",
        &[t, n, c],
        &f32_bytes(&random_values(t * n * c, 9)),
    );
    for strategy in ["bald", "mean-entropy", "entropy"] {
        let run = pool.run(&["--strategy", strategy, "--budget", "5", "--logits", &pool.path("mc.safetensors")]);
        assert!(run.ok && run.out.len() == 5, "{strategy}: {}", run.stderr);
    }
}

/// Expect failure with a message that contains every one of `needles`.
fn assert_fails(run: Run, needles: &[&str]) {
    assert!(!run.ok, "expected failure");
    for needle in needles {
        assert!(run.stderr.contains(needle), "stderr lacks '{needle}': {}", run.stderr);
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let pool = Pool::new();
    let (n, c) = (pool.n, pool.c);
    let l = pool.path("l.safetensors");
    // Missing key.
    write_safetensors(&pool.file("k.safetensors"), "scores", "F32", &[n, c], &f32_bytes(&pool.logits));
    let run = pool.run(&["--strategy", "entropy", "--budget", "2", "--logits", &pool.path("k.safetensors")]);
    assert_fails(run, &["k.safetensors", "logits"]);
    // Wrong rank.
    write_safetensors(&pool.file("r.safetensors"), "logits", "F32", &[n * c], &f32_bytes(&pool.logits));
    let run = pool.run(&["--strategy", "entropy", "--budget", "2", "--logits", &pool.path("r.safetensors")]);
    assert_fails(run, &["r.safetensors", "logits", "rank 1"]);
    write_npy(&pool.file("r.npy"), "<f4", &[n, 2, 3], &f32_bytes(&random_values(n * 6, 3)));
    let run = pool.run(&["--strategy", "coreset", "--budget", "2", "--features", &pool.path("r.npy")]);
    assert_fails(run, &["r.npy", "features", "rank 3"]);
    // N mismatch.
    write_npy(&pool.file("short.npy"), "<f4", &[n - 1, 4], &f32_bytes(&random_values((n - 1) * 4, 3)));
    let run =
        pool.run(&["--strategy", "badge", "--budget", "2", "--logits", &l, "--features", &pool.path("short.npy")]);
    assert_fails(run, &["short.npy", "features", "N ="]);
    // NaN in logits, Inf in features: the first bad row is named.
    let mut bad = pool.logits.clone();
    bad[17 * c + 2] = f32::NAN;
    bad[40 * c] = f32::NAN;
    write_safetensors(&pool.file("nan.safetensors"), "logits", "F32", &[n, c], &f32_bytes(&bad));
    let run = pool.run(&["--strategy", "entropy", "--budget", "2", "--logits", &pool.path("nan.safetensors")]);
    assert_fails(run, &["nan.safetensors", "logits", "row 17"]);
    let mut feats = random_values(n * 4, 5);
    feats[33 * 4 + 1] = f32::INFINITY;
    write_npy(&pool.file("inf.npy"), "<f4", &[n, 4], &f32_bytes(&feats));
    let run = pool.run(&["--strategy", "coreset", "--budget", "2", "--features", &pool.path("inf.npy")]);
    assert_fails(run, &["inf.npy", "features", "row 33"]);
    // Unsupported or malformed npy.
    write_npy(&pool.file("i.npy"), "<i4", &[n, c], &vec![0u8; n * c * 4]);
    let run = pool.run(&["--strategy", "entropy", "--budget", "2", "--logits", &pool.path("i.npy")]);
    assert_fails(run, &["i.npy", "logits", "dtype"]);
    std::fs::write(pool.file("junk.npy"), b"not an array at all").unwrap();
    let run = pool.run(&["--strategy", "entropy", "--budget", "2", "--logits", &pool.path("junk.npy")]);
    assert_fails(run, &["junk.npy", "logits"]);
}

#[test]
fn bad_labelled_sets_and_budgets_are_clear_errors() {
    let pool = Pool::new();
    let l = pool.path("l.safetensors");
    let entropy = |extra: &[&str]| pool.run(&[&["--strategy", "entropy", "--logits", &l][..], extra].concat());
    std::fs::write(pool.file("range.txt"), format!("1\n{}\n", pool.n)).unwrap();
    assert_fails(
        entropy(&["--budget", "2", "--labeled", &pool.path("range.txt")]),
        &["range.txt", "line 2", "out of range"],
    );
    std::fs::write(pool.file("rep.txt"), "4\n5\n4\n").unwrap();
    assert_fails(entropy(&["--budget", "2", "--labeled", &pool.path("rep.txt")]), &["rep.txt", "line 3", "repeated"]);
    std::fs::write(pool.file("word.txt"), "4\nfive\n").unwrap();
    assert_fails(entropy(&["--budget", "2", "--labeled", &pool.path("word.txt")]), &["word.txt", "line 2"]);
    std::fs::write(pool.file("few.txt"), "0\n").unwrap();
    let args = ["--budget", "2", "--labeled", &pool.path("idx.txt"), "--labels", &pool.path("few.txt")];
    assert_fails(entropy(&args), &["few.txt", "labels"]);
    std::fs::write(pool.file("cls.txt"), "0\n9\n1\n").unwrap();
    let args = ["--budget", "2", "--labeled", &pool.path("idx.txt"), "--labels", &pool.path("cls.txt")];
    assert_fails(entropy(&args), &["cls.txt", "line 2", "out of range"]);
    assert_fails(
        entropy(&["--budget", &(pool.n - 2).to_string(), "--labeled", &pool.path("idx.txt")]),
        &["--budget", "exceeds"],
    );
    let all: String = (0..pool.n).map(|i| format!("{i}\n")).collect();
    std::fs::write(pool.file("all.txt"), all).unwrap();
    assert_fails(entropy(&["--budget", "1", "--labeled", &pool.path("all.txt")]), &["all.txt", "empty"]);
    assert_fails(entropy(&["--budget", "1", "--labeled", &pool.path("missing.txt")]), &["missing.txt"]);
}

#[test]
fn a_strategy_without_its_input_is_a_clear_error() {
    let pool = Pool::new();
    let l = pool.path("l.safetensors");
    let run = pool.run(&["--strategy", "coreset", "--budget", "2", "--logits", &l]);
    assert_fails(run, &["--features", "coreset"]);
    let run = pool.run(&["--strategy", "entropy", "--budget", "2", "--features", &pool.path("f.npy")]);
    assert_fails(run, &["--logits", "entropy"]);
    let run = pool.run(&["--strategy", "bald", "--budget", "2", "--logits", &l]);
    assert_fails(run, &["l.safetensors", "logits", "MC samples"]);
    let run = pool.run(&[
        "--strategy",
        "featdist",
        "--budget",
        "2",
        "--logits",
        &l,
        "--features",
        &pool.path("f.npy"),
        "--labeled",
        &pool.path("idx.txt"),
    ]);
    assert_fails(run, &["labels"]);
    let run = pool.run(&["--strategy", "entropy", "--budget", "2", "--logits", &l, "--device", "cuda"]);
    assert_fails(run, &["cuda"]);
}

/// `--device cuda-emu` runs entropy/least-confidence/margin, coreset and BADGE on the selection kernels and picks
/// exactly what the CPU picks (for BADGE on these inputs: its draws can part from the CPU's only after one lands
/// within rounding of a row's boundary, see `select::gpu`), reporting the greedy picks as the CPU path does.
#[cfg(feature = "cuda-emu")]
#[test]
fn device_cuda_emu_picks_the_cpu_indices() {
    let pool = Pool::new();
    let (l, f, idx, lab) = (pool.path("l.safetensors"), pool.path("f.npy"), pool.path("idx.txt"), pool.path("lab.txt"));
    for strategy in ["entropy", "least-confidence", "margin", "coreset", "badge"] {
        let args = ["--strategy", strategy, "--budget", "7", "--logits", &l, "--features", &f, "--seed", "4"];
        let labelled = ["--labeled", &idx, "--labels", &lab];
        for extra in [&[][..], &labelled[..]] {
            let cpu = pool.run(&[&args[..], extra].concat());
            let emu = pool.run(&[&args[..], extra, &["--device", "cuda-emu"]].concat());
            assert!(cpu.ok && emu.ok, "{strategy}: {} {}", cpu.stderr, emu.stderr);
            assert_eq!(emu.out.len(), 7, "{strategy}");
            assert_eq!(emu.out, cpu.out, "{strategy} on cuda-emu");
            let last = r#"{"event":"progress","done":7,"total":7}"#;
            assert_eq!(emu.stderr.contains(last), cpu.stderr.contains(last), "{strategy}: {}", emu.stderr);
        }
    }
}
