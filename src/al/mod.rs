//! The active-learning runner: rounds of training an adapter on the labelled images, evaluating it, and
//! choosing the next images to label, for several arms (strategy + loss) and seeds. Resumable at any point:
//! the same command continues a killed run and ends with the results an uninterrupted one would have.
//!
//! Layout of a run directory:
//! - `experiment.toml`: the experiment, to recognise a resume;
//! - `selected/`: the rows labelled at the start of each round (an IDX split's rows; for file lists, line
//!   numbers of `pool.txt`, counted from 0);
//! - `rounds/`: one JSON record per completed round; `cache/`: frozen features;
//! - the reports made from the records: `metrics.csv`, `timings.csv`, `summary.md`, `curves.svg`.

pub mod clip_lora;
pub mod config;
pub mod coop;
pub mod data;
pub mod learner;
pub mod record;
pub mod report;
pub mod runner;

use std::path::Path;
use std::sync::Arc;

pub use config::Experiment;
pub use record::RoundRecord;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::preprocess::Preprocessor;
use crate::tokenizer::ClipTokenizer;
use clip_lora::ClipLoraLearner;
use config::MethodKind;
use coop::{CoopLearner, PromptSettings};
use learner::{FrozenFeatures, HeadLearner, Learner, LoraLearner};
use runner::{Budgets, RunDir};

/// Forward batch of the frozen and evaluation passes.
const FORWARD_BATCH: usize = 32;

/// Runs (or resumes) `exp`, read from `config`, in `out`; `on_round` sees each completed round. Returns every
/// record of the experiment.
pub fn run(
    exp: &Experiment,
    config: &Path,
    out: &Path,
    mut on_round: impl FnMut(&RoundRecord),
) -> Result<Vec<RoundRecord>> {
    let kind = exp.device_kind().map_err(|why| Error::field(config, "device", why))?;
    let device = Device::open(kind)?;
    let cpu_model = Model::load(&exp.model)?;
    let pre = Preprocessor::for_model(&cpu_model, &exp.model)?;
    let data = Arc::new(data::Dataset::load(&exp.data, pre, config)?);
    let budgets = Budgets::of(exp, &data, config)?;
    // The CLIP methods (CoOp, LoRA on a CLIPModel) classify by prompts: their names and tokenizer first.
    let prompts = match exp.method.kind {
        MethodKind::Coop => Some(prompt_settings(exp, &data, &cpu_model, config, "CoOp")?),
        MethodKind::Lora if cpu_model.clip().is_some() => {
            Some(prompt_settings(exp, &data, &cpu_model, config, "LoRA on CLIP")?)
        }
        _ => None,
    };
    let dir = RunDir::new(out);
    dir.prepare(exp)?; // only once the experiment is known to be runnable
    if let Some(files) = data.pool_files() {
        let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
        crate::weights::write_atomic(&out.join("pool.txt"), list.as_bytes())?;
    }
    let mut learner = build_learner(exp, cpu_model, prompts, &data, device, &dir)?;
    let arms = exp.arm_names();
    let mut records = dir.records(exp)?;
    let done_before = records.len();
    for &seed in &exp.seeds {
        for arm in &exp.arms {
            runner::run_arm(exp, arm, seed, &data, &budgets, learner.as_mut(), &dir, &mut |record| {
                on_round(record);
                records.push(record.clone());
                report::write_reports(out, &records, &arms, &exp.title)
            })?;
        }
    }
    if records.len() == done_before {
        report::write_reports(out, &records, &arms, &exp.title)?; // nothing ran: the reports of a finished run
    }
    Ok(records)
}

/// The class prompts of a CLIP `method` and the checkpoint's tokenizer, checked before anything is computed or
/// written.
fn prompt_settings(
    exp: &Experiment,
    data: &data::Dataset,
    model: &Model,
    config: &Path,
    method: &str,
) -> Result<(PromptSettings, ClipTokenizer)> {
    let classnames = data.classnames.clone().ok_or_else(|| {
        Error::field(config, "data.classnames", format!("{method} prompts with the class names, in label order"))
    })?;
    let settings = PromptSettings { classnames, n_ctx: exp.method.n_ctx, class_specific: exp.method.class_specific };
    let tokenizer = coop::check_model(model, &exp.model, &settings, method)?;
    Ok((settings, tokenizer))
}

/// The method's learner; the frozen features (head, CoOp) are computed on `device`, or read from the run's cache.
fn build_learner(
    exp: &Experiment,
    cpu_model: Model,
    prompts: Option<(PromptSettings, ClipTokenizer)>,
    data: &Arc<data::Dataset>,
    device: Device,
    dir: &RunDir,
) -> Result<Box<dyn Learner>> {
    let cache = dir.feature_cache();
    // On a GPU the frozen model is uploaded only when there is no cache to read the features from (a resume).
    let frozen = |cpu_model: &Model| match device {
        Device::Gpu(_) if !cache.exists() => {
            FrozenFeatures::new(&Model::load_on(&exp.model, &device)?, data, &device, FORWARD_BATCH, &cache)
        }
        _ => FrozenFeatures::new(cpu_model, data, &Device::Cpu, FORWARD_BATCH, &cache),
    };
    Ok(match exp.method.kind {
        MethodKind::Head => Box::new(HeadLearner::new(frozen(&cpu_model)?, data.classes)),
        MethodKind::Lora => match prompts {
            Some((settings, tokenizer)) => Box::new(ClipLoraLearner::new(
                cpu_model,
                &exp.model,
                tokenizer,
                settings,
                exp.lora_config(),
                data.clone(),
                device,
                FORWARD_BATCH,
            )),
            None => Box::new(LoraLearner::new(
                cpu_model,
                &exp.model,
                exp.lora_config(),
                data.clone(),
                device,
                FORWARD_BATCH,
            )?),
        },
        MethodKind::Coop => {
            let (settings, tokenizer) = prompts.expect("`run` checks a CoOp experiment's prompts first");
            let features = frozen(&cpu_model)?;
            Box::new(CoopLearner::new(cpu_model, tokenizer, features, settings))
        }
    })
}
