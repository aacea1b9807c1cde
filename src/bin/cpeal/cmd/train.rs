//! `cpeal train`: an adapter trained with cross-entropy and the calibration loss on a batch file. `lora`: LoRA on
//! the blocks of a ViT or DINOv2 checkpoint plus a classification head, written in peft's format; `coop`: CLIP's
//! prompt context (the image tower frozen, each image encoded once).

use std::path::{Path, PathBuf};

use cpeal::adapters::{CoopAdapter, LoraAdapter, LoraConfig};
use cpeal::models::Model;
use cpeal::ops::CalibWeighting;
use cpeal::optim::OptimizerKind;
use cpeal::progress::Progress;
use cpeal::tokenizer::ClipTokenizer;
use cpeal::train::clip_lora::ClipLora;
use cpeal::train::coop;
use cpeal::train::{self, Schedule, TrainOptions};
use cpeal::{DeviceKind, Error, Tensor};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibLoss {
    /// cross-entropy + λ·L_UC (the paper's)
    Uc,
    /// cross-entropy alone
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibSchedule {
    Const,
    /// from λ/100 up to λ over the epochs, as the reference code
    Anneal,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerChoice {
    Sgd,
    Adamw,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Lora,
    Coop,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "lora")]
    pub method: Method,
    /// ViT or DINOv2 checkpoint directory (lora), or a CLIPModel one with tokenizer.json (coop)
    #[arg(long)]
    pub model: PathBuf,
    /// CLIP (coop, or lora on a CLIP checkpoint): one class name per line, in label order
    #[arg(long)]
    pub classnames: Option<PathBuf>,
    /// CLIP: context vectors (coop), or placeholder words (lora), before the class name in "X X … X {class}."
    #[arg(long, default_value_t = 16)]
    pub n_ctx: usize,
    /// coop: one context per class instead of one shared by all
    #[arg(long)]
    pub class_specific: bool,
    #[command(flatten)]
    pub data: super::labelled::Source,
    /// start from this adapter (peft's, with its own r, α, targets, rsLoRA, dropout; or a CoOp one) instead of
    /// a fresh one
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// classes of the new head (default: the largest label + 1)
    #[arg(long)]
    pub num_labels: Option<usize>,
    #[arg(long, default_value_t = 4)]
    pub lora_r: usize,
    #[arg(long, default_value_t = 4.0)]
    pub lora_alpha: f32,
    /// module names, comma-separated: q_proj, k_proj, v_proj, o_proj, fc1, fc2 (or query, key, value)
    #[arg(long, default_value = "q_proj,k_proj,v_proj", value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f32,
    /// scale α/√r instead of α/r
    #[arg(long)]
    pub rslora: bool,
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerChoice,
    #[arg(long, default_value_t = 0.002)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// SGD's L2 term, or AdamW's decoupled decay
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    /// scale the gradients down together when their global L2 norm exceeds this
    #[arg(long)]
    pub clip_grad_norm: Option<f32>,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// epochs at the constant --warmup-lr before the cosine schedule
    #[arg(long, default_value_t = 1)]
    pub warmup_epochs: usize,
    #[arg(long, default_value_t = 1e-5)]
    pub warmup_lr: f32,
    #[arg(long, value_enum, default_value = "uc")]
    pub calib_loss: CalibLoss,
    /// λ
    #[arg(long, default_value_t = 1.0)]
    pub calib_weight: f32,
    /// inter: each group weighted by the other's share of the batch; sum: L_cor + L_inc
    #[arg(long, default_value = "inter", value_parser = ["inter", "sum"])]
    pub calib_weighting: String,
    #[arg(long, value_enum, default_value = "anneal")]
    pub calib_schedule: CalibSchedule,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// one JSON object per step on standard output (step, epoch, loss, ce, l_uc, lr, calib_weight, …)
    #[arg(long)]
    pub json: bool,
    /// gradients are computed on the CPU so far
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// lora on a ViT/DINOv2: after training, report accuracy and calibration on this batch file (as `cpeal eval`)
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// the adapter directory to write (adapter_config.json + adapter_model.safetensors)
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    if args.device != DeviceKind::Cpu {
        return Err(Error::invalid("--device", "training runs on the CPU so far (gradients have no GPU kernels yet)"));
    }
    let model = Model::load(&args.model)?;
    let (images, labels) = args.data.read(&model, &args.model)?;
    match args.method {
        Method::Lora if model.clip().is_some() => train_clip_lora(args, model, &images, &labels),
        Method::Lora => train_lora(args, model, &images, &labels),
        Method::Coop => train_coop(args, model, &images, &labels),
    }
}

fn train_lora(args: &Args, mut model: Model, images: &Tensor, labels: &[usize]) -> cpeal::Result<()> {
    let mut adapter = match &args.init {
        Some(dir) => LoraAdapter::load(dir)?,
        None => {
            let classes = args.num_labels.unwrap_or(labels.iter().max().map_or(0, |m| m + 1));
            LoraAdapter::fresh(&mut model, lora_config(args), Some(classes), args.seed)?
        }
    };
    let classes =
        adapter.tensors.iter().find(|(name, _)| name.ends_with("classifier.weight")).map(|(_, w)| w.shape()[0]);
    let classes =
        classes.ok_or_else(|| Error::invalid("train", "the adapter has no classifier to train (modules_to_save)"))?;
    check_labels(labels, classes, args.data.path())?;
    adapter.attach(&mut model, false)?;
    let mut report = StepReport::new(args, labels.len());
    train::train_image_classifier(&mut model, &mut adapter, images, labels, &options(args), |log| report.step(log))?;
    report.finish();
    adapter.save(&args.out, &args.model.display().to_string())?;
    eprintln!("adapter written to {}", args.out.display());
    if let Some(data) = &args.eval_data {
        let (images, labels) = super::labelled::read_batch(data)?;
        super::eval::report(&model, &cpeal::Device::Cpu, &images, &labels, args.batch_size, data, args.json)?;
    }
    Ok(())
}

/// LoRA on both CLIP towers with the fixed prompts "X … X {class}." (`--n-ctx` placeholders).
fn train_clip_lora(args: &Args, mut model: Model, images: &Tensor, labels: &[usize]) -> cpeal::Result<()> {
    let classnames = read_classnames(args)?;
    check_labels(labels, classnames.len(), args.data.path())?;
    no_eval_data(args)?;
    let mut adapter = match &args.init {
        Some(dir) => LoraAdapter::load(dir)?,
        None => LoraAdapter::fresh(
            &mut model,
            LoraConfig { modules_to_save: Vec::new(), ..lora_config(args) },
            None,
            args.seed,
        )?,
    };
    let tokenizer = ClipTokenizer::from_dir(&args.model)?;
    let mut params = adapter.tensors.clone();
    let mut report = StepReport::new(args, labels.len());
    let mut trainee = ClipLora::new(&mut model, &adapter, &tokenizer, &classnames, args.n_ctx, images)?;
    train::train(&mut trainee, &mut params, labels, &options(args), |log| report.step(log))?;
    report.finish();
    adapter.tensors = params;
    adapter.save(&args.out, &args.model.display().to_string())?;
    eprintln!("adapter written to {}", args.out.display());
    Ok(())
}

fn no_eval_data(args: &Args) -> cpeal::Result<()> {
    match args.eval_data {
        Some(_) => Err(Error::invalid("--eval-data", "evaluates image classifiers (lora on ViT or DINOv2) so far")),
        None => Ok(()),
    }
}

fn read_classnames(args: &Args) -> cpeal::Result<Vec<String>> {
    let file =
        args.classnames.as_ref().ok_or_else(|| Error::invalid("--classnames", "CLIP methods need the class names"))?;
    super::embed_text::read_lines(file)
}

fn train_coop(args: &Args, model: Model, images: &Tensor, labels: &[usize]) -> cpeal::Result<()> {
    no_eval_data(args)?;
    let classnames = read_classnames(args)?;
    check_labels(labels, classnames.len(), args.data.path())?;
    let clip =
        model.clip().ok_or_else(|| Error::invalid(args.model.display().to_string(), "coop needs a CLIP checkpoint"))?;
    let tokenizer = ClipTokenizer::from_dir(&args.model)?;
    let init = args.init.as_ref().map(|dir| CoopAdapter::load(dir)).transpose()?;
    let (n_ctx, class_specific) =
        init.as_ref().map_or((args.n_ctx, args.class_specific), |a| (a.n_ctx, a.class_specific));
    let embeds = coop::encode_images(clip, images, args.batch_size, &cpeal::Device::Cpu)?;
    let mut prompts = coop::CoopPrompts::new(clip, &tokenizer, &classnames, n_ctx, embeds)?;
    let ctx = match init {
        Some(a) => a.ctx,
        None => prompts.fresh_context(class_specific, args.seed)?,
    };
    let mut params = vec![(coop::CONTEXT.to_string(), ctx)];
    let mut report = StepReport::new(args, labels.len());
    train::train(&mut prompts, &mut params, labels, &options(args), |log| report.step(log))?;
    report.finish();
    let adapter = CoopAdapter { classnames, n_ctx, class_specific, ctx: params.remove(0).1 };
    adapter.save(&args.out, &args.model.display().to_string())?;
    eprintln!("adapter written to {}", args.out.display());
    Ok(())
}

/// Each step as a JSON line on standard output (`--json`), or as a progress bar.
struct StepReport {
    progress: Option<Progress>,
}

impl StepReport {
    fn new(args: &Args, rows: usize) -> StepReport {
        let steps = train::batches_per_epoch(rows, args.batch_size) * args.epochs;
        StepReport { progress: (!args.json).then(|| Progress::new(steps, "train")) }
    }

    fn step(&mut self, log: &train::StepLog) {
        match &mut self.progress {
            Some(p) => p.inc(1),
            None => println!("{}", log.json()),
        }
    }

    fn finish(&mut self) {
        if let Some(p) = &mut self.progress {
            p.finish();
        }
    }
}

fn lora_config(args: &Args) -> LoraConfig {
    LoraConfig {
        r: args.lora_r,
        alpha: args.lora_alpha,
        target_modules: args.lora_targets.clone(),
        rslora: args.rslora,
        dropout: args.lora_dropout,
        modules_to_save: vec!["classifier".to_string()],
    }
}

fn options(args: &Args) -> TrainOptions {
    let calib_weight = match args.calib_loss {
        CalibLoss::Uc => args.calib_weight,
        CalibLoss::None => 0.0,
    };
    TrainOptions {
        schedule: Schedule {
            epochs: args.epochs,
            lr: args.lr,
            warmup_epochs: args.warmup_epochs,
            warmup_lr: args.warmup_lr,
            calib_weight,
            anneal: args.calib_schedule == CalibSchedule::Anneal,
        },
        batch_size: args.batch_size,
        optimizer: match args.optimizer {
            OptimizerChoice::Sgd => OptimizerKind::Sgd { momentum: args.momentum, weight_decay: args.weight_decay },
            OptimizerChoice::Adamw => OptimizerKind::AdamW { weight_decay: args.weight_decay },
        },
        clip_grad_norm: args.clip_grad_norm,
        weighting: if args.calib_weighting == "sum" { CalibWeighting::Sum } else { CalibWeighting::Inter },
        seed: args.seed,
    }
}

/// Every label is one of the `classes`.
fn check_labels(labels: &[usize], classes: usize, data: &Path) -> cpeal::Result<()> {
    match labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        Some((row, l)) => {
            Err(Error::tensor(data, "labels", format!("row {row} has label {l}, but there are {classes} classes")))
        }
        None => Ok(()),
    }
}
