//! An experiment, as a TOML file: the model, the data (pool and test rows), the method (what is trained), the
//! protocol (rounds, budgets, PCB), the training settings and the arms (strategy + loss), each run for every
//! seed. Unknown keys are errors naming the key; relative paths are taken from the config file's folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adapters::LoraConfig;
use crate::device::DeviceKind;
use crate::error::{Error, Result};
use crate::ops::CalibWeighting;
use crate::optim::OptimizerKind;
use crate::select::Strategy;
use crate::train::{Schedule, TrainOptions};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The title of the summary and the plot.
    #[serde(default = "default_title")]
    pub title: String,
    /// A ViT or DINOv2 checkpoint directory, or a CLIPModel one (with `tokenizer.json` for CoOp).
    pub model: PathBuf,
    /// cpu, cuda, cuda-emu or auto: where the frozen forwards run (training runs on the CPU).
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    pub data: DataConfig,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub method: MethodConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(rename = "arm")]
    pub arms: Vec<Arm>,
}

/// Where the images come from; exactly one source:
/// - `idx` (an MNIST-layout folder such as Fashion-MNIST's): `pool` and `test` are row ranges of `split`;
/// - `split_file` (CoOp's / PCB's `split_zhou_<Name>.json`): the pool is its `train` list, the test set its
///   `test` list, image paths relative to `image_root` (default: the split file's folder);
/// - `pool_folder` and `test_folder`: one subfolder of images per class, classes sorted by name;
/// - `pool_csv` and `test_csv`: CSV files with a header naming a `path` and a `label` column (and optionally
///   `classname`; other columns are ignored), paths relative to `image_root` (default: each file's folder).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub idx: Option<PathBuf>,
    #[serde(default = "default_split")]
    pub split: String,
    /// `idx`: rows `[start, end)` forming the unlabelled pool.
    pub pool: Option<[usize; 2]>,
    /// `idx`: rows `[start, end)` the model is evaluated on each round; they must not overlap the pool.
    pub test: Option<[usize; 2]>,
    pub split_file: Option<PathBuf>,
    pub image_root: Option<PathBuf>,
    pub pool_folder: Option<PathBuf>,
    pub test_folder: Option<PathBuf>,
    pub pool_csv: Option<PathBuf>,
    pub test_csv: Option<PathBuf>,
    /// Classes (default: from the source: the largest label + 1, the split file's or the folders' classes).
    pub classes: Option<usize>,
    /// The class names in label order, for CoOp's prompts (default: the split file's, or the folders' names).
    pub classnames: Option<Vec<String>>,
}

impl DataConfig {
    fn check(&self) -> std::result::Result<(), (String, String)> {
        let given =
            [self.idx.is_some(), self.split_file.is_some(), self.pool_folder.is_some(), self.pool_csv.is_some()];
        if given.iter().filter(|&&g| g).count() != 1 {
            let why = "give exactly one of idx (with pool and test), split_file, pool_folder (with test_folder), \
                       pool_csv (with test_csv)";
            return Err(("data".into(), why.into()));
        }
        if self.pool_folder.is_some() != self.test_folder.is_some() {
            return Err(("data.test_folder".into(), "pool_folder and test_folder go together".into()));
        }
        if self.pool_csv.is_some() != self.test_csv.is_some() {
            return Err(("data.test_csv".into(), "pool_csv and test_csv go together".into()));
        }
        if self.idx.is_none() {
            return match (self.pool, self.test) {
                (None, None) => Ok(()),
                _ => Err(("data.pool".into(), "row ranges are for idx datasets".into())),
            };
        }
        let (Some([ps, pe]), Some([ts, te])) = (self.pool, self.test) else {
            return Err((
                "data.pool".into(),
                "an idx dataset needs pool = [start, end] and test = [start, end]".into(),
            ));
        };
        if ps >= pe || ts >= te {
            return Err(("data".into(), format!("empty range: pool {:?}, test {:?}", [ps, pe], [ts, te])));
        }
        if ps < te && ts < pe {
            return Err(("data.test".into(), format!("rows {:?} overlap the pool {:?}", [ts, te], [ps, pe])));
        }
        Ok(())
    }

    /// Relative paths taken from `base`.
    fn rebase(&mut self, base: &Path) {
        let paths = [
            &mut self.idx,
            &mut self.split_file,
            &mut self.image_root,
            &mut self.pool_folder,
            &mut self.test_folder,
            &mut self.pool_csv,
            &mut self.test_csv,
        ];
        for path in paths.into_iter().flatten() {
            // Without `.` components: `image_root = "."` names the config's folder itself in every image path.
            *path = base.join(&*path).components().filter(|c| *c != std::path::Component::CurDir).collect();
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protocol {
    /// Rounds of training and evaluation, the initial random round included.
    pub rounds: usize,
    /// Images labelled at random before round 0 (default: the number of classes).
    pub initial: Option<usize>,
    /// Images selected per round (default: the number of classes).
    pub budget: Option<usize>,
    /// Balance the picks over predicted classes (PCB), among the `candidates` fraction of the pool the
    /// strategy ranks highest.
    pub pcb: bool,
    pub candidates: f64,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol { rounds: 10, initial: None, budget: None, pcb: true, candidates: 0.1 }
    }
}

/// What is trained each round, from scratch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    /// `head`: a linear head on the frozen backbone's features (computed once per experiment and cached; on
    /// CLIP, its image embeddings); `lora`: LoRA on the blocks plus the head (ViT, DINOv2), or on both towers of a
    /// CLIPModel with fixed prompts; `coop`: CoOp's learned prompts on a CLIPModel (the paper's method).
    pub kind: MethodKind,
    /// LoRA: rank, α, target modules, rsLoRA scaling, dropout on the LoRA input.
    pub r: usize,
    pub alpha: f32,
    pub targets: Vec<String>,
    pub rslora: bool,
    pub dropout: f32,
    /// CLIP: words before the class name (CoOp's learned context vectors, LoRA's plain "X"s); CoOp: one context
    /// per class, or one shared by all.
    pub n_ctx: usize,
    pub class_specific: bool,
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            kind: MethodKind::Head,
            r: 4,
            alpha: 4.0,
            targets: ["q_proj", "k_proj", "v_proj"].map(String::from).to_vec(),
            rslora: true,
            dropout: 0.0,
            n_ctx: 16,
            class_specific: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    Head,
    Lora,
    Coop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// sgd or adamw
    pub optimizer: String,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub warmup_epochs: usize,
    pub warmup_lr: f32,
    pub clip_grad_norm: Option<f32>,
    /// λ of the arms that train with the calibration loss.
    pub calib_weight: f32,
    /// inter or sum
    pub calib_weighting: String,
    /// Anneal λ from λ/100 over the epochs (the reference code), or hold it constant.
    pub calib_anneal: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 32,
            optimizer: "sgd".into(),
            lr: 0.002,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup_epochs: 1,
            warmup_lr: 1e-5,
            clip_grad_norm: None,
            calib_weight: 1.0,
            calib_weighting: "inter".into(),
            calib_anneal: true,
        }
    }
}

/// A strategy with the loss its model trains with, run for every seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Unique; names the arm in file names and reports (letters, digits, `+`, `-`, `_`, `.`).
    pub name: String,
    /// A `cpeal select` strategy: random, entropy, least-confidence, margin, coreset, badge, featdist.
    pub strategy: String,
    /// `uc` (cross-entropy + λ·L_UC, the paper's) or `none` (cross-entropy alone).
    #[serde(default = "default_calib_loss")]
    pub calib_loss: String,
}

fn default_title() -> String {
    "Active learning".into()
}
fn default_device() -> String {
    "auto".into()
}
fn default_seeds() -> Vec<u64> {
    vec![0]
}
fn default_split() -> String {
    "t10k".into()
}
fn default_calib_loss() -> String {
    "uc".into()
}

impl Experiment {
    /// Reads and checks `path`; relative paths in it become relative to its folder.
    pub fn read(path: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut exp = Experiment::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        exp.model = base.join(&exp.model);
        exp.data.rebase(base);
        Ok(exp)
    }

    /// Parses and checks TOML text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Experiment> {
        let exp: Experiment =
            toml::from_str(text).map_err(|e| Error::invalid(path.display().to_string(), e.to_string().trim_end()))?;
        exp.check().map_err(|(field, why)| Error::field(path, field, why))?;
        Ok(exp)
    }

    /// The experiment as TOML (kept in the run directory, to tell a resume from a different experiment).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an experiment serialises")
    }

    fn check(&self) -> std::result::Result<(), (String, String)> {
        let fail = |field: &str, why: String| Err((field.to_string(), why));
        if self.arms.is_empty() {
            return fail("arm", "no [[arm]] to run".into());
        }
        if self.seeds.is_empty() {
            return fail("seeds", "no seed to run".into());
        }
        if self.protocol.rounds == 0 {
            return fail("protocol.rounds", "at least one round".into());
        }
        if !(self.protocol.candidates > 0.0 && self.protocol.candidates <= 1.0) {
            return fail("protocol.candidates", format!("{} is not in (0, 1]", self.protocol.candidates));
        }
        self.data.check()?;
        self.device_kind().map_err(|why| ("device".to_string(), why))?;
        self.optimizer().map_err(|why| ("train.optimizer".to_string(), why))?;
        if !matches!(self.train.calib_weighting.as_str(), "inter" | "sum") {
            return fail("train.calib_weighting", format!("`{}`: expected inter or sum", self.train.calib_weighting));
        }
        if self.method.kind == MethodKind::Coop && self.method.n_ctx == 0 {
            return fail("method.n_ctx", "CoOp needs at least one context vector".into());
        }
        if self.train.epochs == 0 || self.train.batch_size == 0 {
            return fail("train", "epochs and batch_size must be positive".into());
        }
        self.check_arms()
    }

    fn check_arms(&self) -> std::result::Result<(), (String, String)> {
        for (k, arm) in self.arms.iter().enumerate() {
            let field = |name: &str| format!("arm[{k}].{name}");
            let name_ok =
                !arm.name.is_empty() && arm.name.chars().all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c));
            if !name_ok {
                return Err((field("name"), format!("`{}`: use letters, digits, + - _ .", arm.name)));
            }
            if self.arms[..k].iter().any(|a| a.name == arm.name) {
                return Err((field("name"), format!("`{}` names two arms", arm.name)));
            }
            let strategy = arm.strategy().map_err(|why| (field("strategy"), why))?;
            if strategy.needs_mc_samples() || strategy == Strategy::MeanEntropy {
                return Err((
                    field("strategy"),
                    format!("{} needs MC samples, which the runner does not draw", arm.strategy),
                ));
            }
            if !matches!(arm.calib_loss.as_str(), "uc" | "none") {
                return Err((field("calib_loss"), format!("`{}`: expected uc or none", arm.calib_loss)));
            }
        }
        Ok(())
    }

    pub fn device_kind(&self) -> std::result::Result<DeviceKind, String> {
        <DeviceKind as clap::ValueEnum>::from_str(&self.device, true)
            .map_err(|_| format!("`{}`: expected cpu, cuda, cuda-emu or auto", self.device))
    }

    fn optimizer(&self) -> std::result::Result<OptimizerKind, String> {
        let t = &self.train;
        match t.optimizer.as_str() {
            "sgd" => Ok(OptimizerKind::Sgd { momentum: t.momentum, weight_decay: t.weight_decay }),
            "adamw" => Ok(OptimizerKind::AdamW { weight_decay: t.weight_decay }),
            other => Err(format!("`{other}`: expected sgd or adamw")),
        }
    }

    /// The training options of `arm` with `seed`.
    pub fn train_options(&self, arm: &Arm, seed: u64) -> TrainOptions {
        let t = &self.train;
        let calib_weight = if arm.calib_loss == "uc" { t.calib_weight } else { 0.0 };
        TrainOptions {
            schedule: Schedule {
                epochs: t.epochs,
                lr: t.lr,
                warmup_epochs: t.warmup_epochs,
                warmup_lr: t.warmup_lr,
                calib_weight,
                anneal: t.calib_anneal,
            },
            batch_size: t.batch_size,
            optimizer: self.optimizer().expect("checked when read"),
            clip_grad_norm: t.clip_grad_norm,
            weighting: if t.calib_weighting == "sum" { CalibWeighting::Sum } else { CalibWeighting::Inter },
            seed,
        }
    }

    /// The LoRA settings of the `lora` method; the head is always trained.
    pub fn lora_config(&self) -> LoraConfig {
        let m = &self.method;
        LoraConfig {
            r: m.r,
            alpha: m.alpha,
            target_modules: m.targets.clone(),
            rslora: m.rslora,
            dropout: m.dropout,
            modules_to_save: vec!["classifier".to_string()],
        }
    }

    pub fn arm_names(&self) -> Vec<String> {
        self.arms.iter().map(|a| a.name.clone()).collect()
    }
}

impl Arm {
    pub fn strategy(&self) -> std::result::Result<Strategy, String> {
        <Strategy as clap::ValueEnum>::from_str(&self.strategy, true).map_err(|_| {
            let known: Vec<&str> = <Strategy as clap::ValueEnum>::value_variants().iter().map(|s| s.name()).collect();
            format!("unknown strategy `{}` (known: {})", self.strategy, known.join(", "))
        })
    }
}
