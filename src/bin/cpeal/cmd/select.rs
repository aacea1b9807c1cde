//! `cpeal select`: choose the next samples to label from a pool's logits and/or features.

use std::io::Write;
use std::path::{Path, PathBuf};

use cpeal::select::gpu::select_on_device;
use cpeal::select::input::{line_of_entry, read_integers, read_integers_checked, ArrayFile};
use cpeal::select::{select_with_scores, Mat, PredictionKind, Predictions, SelectionInput, Strategy};
use cpeal::{Device, DeviceKind, Error, Result, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// Acquisition strategy
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Number of samples to choose
    #[arg(long)]
    pub budget: usize,
    /// Pool logits: safetensors with `logits` [N, C] or [T, N, C] (f32/f16/bf16), or a .npy file
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Pool features: safetensors with `features` [N, D] (f32/f16/bf16), or a .npy file
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Already-labelled pool indices, one per line
    #[arg(long)]
    pub labeled: Option<PathBuf>,
    /// Class labels of the labelled indices, one per line, in the same order
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Class-balance the picks (C_PEAL's PCB) among the strategy's top candidates
    #[arg(long)]
    pub pcb: bool,
    /// PCB candidate fraction γ of the pool
    #[arg(long, default_value_t = 0.1, requires = "pcb")]
    pub candidates: f64,
    /// Seed of every random choice
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the per-sample scores (`scores` [N]; NaN for labelled rows) to this safetensors file
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Where to compute
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Output: chosen indices, one per line, in selection order
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let device = Device::open(args.device)?;
    let strategy = args.strategy;
    if args.scores.is_some() && strategy == Strategy::Random {
        return Err(Error::invalid("--scores", "strategy random has no per-sample scores"));
    }
    let logits = args.logits.as_deref().map(|p| ArrayFile::open(p, "logits")).transpose()?;
    let features = args.features.as_deref().map(|p| ArrayFile::open(p, "features")).transpose()?;
    let predictions = logits.as_ref().map(predictions_of).transpose()?;
    let features_mat = features.as_ref().map(features_of).transpose()?;
    check_required(args, predictions.as_ref(), features_mat.is_some())?;
    let n = pool_size(predictions.as_ref(), features_mat.as_ref(), features.as_ref())?;
    let (labeled, labels) = read_labeled(args, n, predictions.as_ref().map(Predictions::classes))?;
    check_budget(args, n, labeled.len())?;

    let mut input =
        SelectionInput::new(args.budget).with_labeled(labeled, labels).with_seed(args.seed).with_progress(true);
    input.predictions = predictions;
    input.features = features_mat;
    input.pcb = args.pcb.then_some(args.candidates);
    let selection = match &device {
        Device::Gpu(gpu) => select_on_device(strategy, &input, gpu)?,
        Device::Cpu => select_with_scores(strategy, &input)?,
    };

    write_indices(&args.out, &selection.indices)?;
    if let (Some(path), Some(scores)) = (&args.scores, selection.scores) {
        let tensor = Tensor::from_vec(scores, &[n])?;
        cpeal::weights::save_safetensors(path, &[("scores", &tensor)], None)?;
    }
    Ok(())
}

/// `logits` as predictions: rank 2 is one pass, rank 3 is `[T, N, C]` MC samples.
fn predictions_of(file: &ArrayFile) -> Result<Predictions<'_>> {
    match *file.shape() {
        [n, c] => Ok(Predictions::logits(file.matrix(n, c)?)),
        [t, n, c] => Predictions::stacked(file.matrix(t * n, c)?, t, PredictionKind::Logits),
        ref shape => Err(Error::field(
            file.path(),
            "logits",
            format!("rank {} (shape {shape:?}); expected [N, C] or [T, N, C]", shape.len()),
        )),
    }
}

fn features_of(file: &ArrayFile) -> Result<Mat<'_>> {
    match *file.shape() {
        [n, d] => file.matrix(n, d),
        ref shape => Err(Error::field(
            file.path(),
            "features",
            format!("rank {} (shape {shape:?}); expected [N, D]", shape.len()),
        )),
    }
}

fn check_required(args: &Args, predictions: Option<&Predictions>, has_features: bool) -> Result<()> {
    let name = args.strategy.name();
    if (args.strategy.needs_predictions() || args.pcb) && predictions.is_none() {
        let why = if args.pcb { "--pcb".to_string() } else { format!("strategy {name}") };
        return Err(Error::invalid("--logits", format!("{why} needs logits (--logits FILE)")));
    }
    if args.strategy.needs_features() && !has_features {
        return Err(Error::invalid("--features", format!("strategy {name} needs features [N, D] (--features FILE)")));
    }
    if let (true, Some(p), Some(path)) = (args.strategy.needs_mc_samples(), predictions, &args.logits) {
        if p.samples() < 2 {
            return Err(Error::field(
                path,
                "logits",
                format!("strategy {name} needs MC samples [T, N, C] with T >= 2; got [N, C]"),
            ));
        }
    }
    if args.labels.is_some() && args.labeled.is_none() {
        return Err(Error::invalid("--labels", "labels given without --labeled indices"));
    }
    Ok(())
}

fn pool_size(predictions: Option<&Predictions>, features: Option<&Mat>, file: Option<&ArrayFile>) -> Result<usize> {
    match (predictions, features, file) {
        (Some(p), Some(f), Some(file)) if p.pool_size() != f.rows() => Err(Error::field(
            file.path(),
            "features",
            format!("N = {} rows, but the logits ({}) have N = {}", f.rows(), p.values().name(), p.pool_size()),
        )),
        (Some(p), _, _) => Ok(p.pool_size()),
        (None, Some(f), _) => Ok(f.rows()),
        _ => Err(Error::invalid("--logits", "no pool given: pass --logits and/or --features")),
    }
}

/// Labelled indices (checked: in range, not repeated) and their labels (checked: count, class range).
fn read_labeled(args: &Args, n: usize, classes: Option<usize>) -> Result<(Vec<usize>, Option<Vec<usize>>)> {
    let Some(path) = &args.labeled else {
        return Ok((Vec::new(), None));
    };
    let labeled = read_integers(path, "index")?;
    let mut first_seen = vec![usize::MAX; n];
    for (k, &i) in labeled.iter().enumerate() {
        let line = || format!("line {}", line_of_entry(path, k));
        if i >= n {
            return Err(Error::field(path, line(), format!("index {i} is out of range for a pool of N = {n}")));
        }
        if first_seen[i] != usize::MAX {
            let first = line_of_entry(path, first_seen[i]);
            return Err(Error::field(path, line(), format!("index {i} is repeated (first on line {first})")));
        }
        first_seen[i] = k;
    }
    let Some(labels_path) = &args.labels else {
        return Ok((labeled, None));
    };
    let out_of_range = |l: usize| classes.filter(|&c| l >= c).map(|c| format!("class {l} is out of range for C = {c}"));
    let labels = read_integers_checked(labels_path, "class label", out_of_range)?;
    if labels.len() != labeled.len() {
        return Err(Error::field(
            labels_path,
            "labels",
            format!("{} labels for {} labelled indices in {}", labels.len(), labeled.len(), path.display()),
        ));
    }
    Ok((labeled, Some(labels)))
}

fn check_budget(args: &Args, n: usize, labeled: usize) -> Result<()> {
    let pool = n - labeled;
    let source = args.labeled.as_deref().unwrap_or(Path::new("--labeled"));
    if pool == 0 {
        return Err(Error::field(source, "labeled", format!("the unlabelled pool is empty (all {n} rows labelled)")));
    }
    if args.budget > pool {
        return Err(Error::invalid(
            "--budget",
            format!("budget {} exceeds the unlabelled pool of {pool} rows (N = {n}, {labeled} labelled)", args.budget),
        ));
    }
    Ok(())
}

fn write_indices(path: &Path, indices: &[usize]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    for i in indices {
        writeln!(out, "{i}").map_err(|e| Error::io(path, e))?;
    }
    out.flush().map_err(|e| Error::io(path, e))
}
