//! What an experiment trains each round, from scratch, and how it predicts: a linear head on the frozen
//! backbone's features (computed once and cached on disk), LoRA on the blocks plus the head, or CoOp's context
//! (`al::coop`). Training runs on the CPU; the frozen forwards (and, for LoRA, the adapted model merged into its
//! weights) run on the device.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::data::Dataset;
use crate::adapters::{init::fresh_classifier, LoraAdapter, LoraConfig};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::nn::Linear;
use crate::progress::Progress;
use crate::tensor::Tensor;
use crate::train::{self, gather_rows, StepLog, TrainOptions, Trainee};
use crate::weights::SafetensorsFile;

/// A model's outputs for some rows, on the host.
pub struct Predicted {
    /// `[rows, classes]`
    pub logits: Vec<f32>,
    /// What the head reads, `[rows, dim]` (coreset, BADGE and featdist select on these).
    pub features: Vec<f32>,
    pub dim: usize,
}

pub trait Learner {
    /// Trains afresh (initialised from `seed`) on split rows `rows` with `labels`.
    fn fit(&mut self, rows: &[usize], labels: &[usize], opts: &TrainOptions, seed: u64) -> Result<()>;
    /// The trained model's outputs for split rows `rows`.
    fn predict(&mut self, rows: &[usize]) -> Result<Predicted>;
}

/// Logits (when the model has a head) and image features (`Model::image_features`) of split rows `rows`, in
/// batches on `device`; with a `label`, shows progress (a bar, or JSON lines on stderr).
pub fn forward_rows(
    model: &Model,
    data: &Dataset,
    rows: &[usize],
    device: &Device,
    batch: usize,
    label: Option<&str>,
) -> Result<Predicted> {
    let (mut logits, mut features) = (Vec::new(), Vec::new());
    let mut progress = label.map(|l| Progress::new(rows.len(), l));
    for chunk in rows.chunks(batch.max(1)) {
        let out = model.forward_images(&data.pixels(chunk)?.to_device(device)?)?;
        features.extend(model.image_features(&out)?.to_vec()?);
        if let Some(l) = &out.logits {
            logits.extend(l.to_vec()?);
        }
        progress.iter_mut().for_each(|p| p.inc(chunk.len()));
    }
    progress.iter_mut().for_each(Progress::finish);
    Ok(Predicted { logits, features, dim: model.image_feature_dim()? })
}

/// The frozen model's image features of every pool and test row, `[rows, dim]`, computed once per experiment.
pub struct FrozenFeatures {
    features: Tensor,
    /// Each split row's position in `features`.
    position: HashMap<usize, usize>,
}

impl FrozenFeatures {
    /// Read from `cache` when it is there (written by an earlier run of this experiment), else computed on
    /// `device` and written there.
    pub fn new(model: &Model, data: &Dataset, device: &Device, batch: usize, cache: &Path) -> Result<FrozenFeatures> {
        let rows: Vec<usize> = data.pool_rows().into_iter().chain(data.test_rows()).collect();
        let dim = model.image_feature_dim()?;
        let features = if cache.exists() {
            read_cache(cache, rows.len(), dim)?
        } else {
            let computed = forward_rows(model, data, &rows, device, batch, Some("frozen features"))?;
            let t = Tensor::from_vec(computed.features, &[rows.len(), dim])?;
            write_cache(cache, &t)?;
            t
        };
        let position = rows.iter().enumerate().map(|(k, &r)| (r, k)).collect();
        Ok(FrozenFeatures { features, position })
    }

    /// The features of split rows `rows`, `[rows, dim]`.
    pub fn gather(&self, rows: &[usize]) -> Result<Tensor> {
        let at = rows
            .iter()
            .map(|r| {
                self.position.get(r).copied().ok_or_else(|| Error::invalid("features", format!("row {r} not cached")))
            })
            .collect::<Result<Vec<_>>>()?;
        gather_rows(&self.features, &at)
    }

    pub fn dim(&self) -> usize {
        self.features.shape()[1]
    }
}

/// A linear head (with bias) over the frozen features.
pub struct HeadLearner {
    frozen: FrozenFeatures,
    classes: usize,
    head: Vec<(String, Tensor)>,
}

impl HeadLearner {
    pub fn new(frozen: FrozenFeatures, classes: usize) -> HeadLearner {
        HeadLearner { frozen, classes, head: Vec::new() }
    }
}

impl Learner for HeadLearner {
    fn fit(&mut self, rows: &[usize], labels: &[usize], opts: &TrainOptions, seed: u64) -> Result<()> {
        let mut params = fresh_classifier(self.frozen.dim(), self.classes, seed)?;
        let mut trainee = HeadTrainee { features: self.frozen.gather(rows)? };
        train::train(&mut trainee, &mut params, labels, opts, |_: &StepLog| {})?;
        self.head = params;
        Ok(())
    }

    fn predict(&mut self, rows: &[usize]) -> Result<Predicted> {
        let features = self.frozen.gather(rows)?;
        let logits = head_linear(&self.head)?.forward(&features)?.to_vec()?;
        Ok(Predicted { logits, dim: features.shape()[1], features: features.to_vec()? })
    }
}

/// The head's two tensors (`…classifier.weight`, `…classifier.bias`) as a layer.
fn head_linear(params: &[(String, Tensor)]) -> Result<Linear> {
    let get = |suffix: &str| {
        params.iter().find(|(n, _)| n.ends_with(suffix)).map(|(_, t)| t.clone()).ok_or_else(|| {
            Error::invalid("head", format!("no {suffix} among the trained tensors (train before predicting)"))
        })
    };
    Ok(Linear::new(get("classifier.weight")?, Some(get("classifier.bias")?)))
}

/// Training rows of the head: the cached features of the labelled rows.
struct HeadTrainee {
    features: Tensor,
}

impl Trainee for HeadTrainee {
    fn logits(&mut self, params: &[(String, Tensor)], rows: &[usize], _step: usize) -> Result<Tensor> {
        head_linear(params)?.forward(&gather_rows(&self.features, rows)?)
    }

    fn finish(&mut self, _params: &[(String, Tensor)]) -> Result<()> {
        Ok(())
    }
}

const CACHE_TENSOR: &str = "features";

fn read_cache(path: &Path, rows: usize, dim: usize) -> Result<Tensor> {
    let corrupt = |why: String| {
        Error::invalid(
            path.display().to_string(),
            format!("the feature cache is unusable ({why}); delete it and run again to recompute it"),
        )
    };
    let file = SafetensorsFile::open(path).map_err(|e| corrupt(e.to_string()))?;
    let t = file.get(CACHE_TENSOR, None).map_err(|e| corrupt(e.to_string()))?;
    if t.shape() != [rows, dim] {
        return Err(corrupt(format!("shape {:?}, expected [{rows}, {dim}]", t.shape())));
    }
    if t.cpu_slice()?.iter().any(|v| !v.is_finite()) {
        return Err(corrupt("non-finite values".into()));
    }
    Ok(t)
}

fn write_cache(path: &Path, features: &Tensor) -> Result<()> {
    let partial = path.with_extension("partial");
    crate::weights::save_safetensors(&partial, &[(CACHE_TENSOR, features)], None)?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

/// Forwards of a model adapted by LoRA: the CPU model itself (the adapter in place), or on a GPU the checkpoint
/// with the adapter merged into its weights, made once per fit.
pub struct AdaptedForward {
    model_dir: PathBuf,
    data: Arc<Dataset>,
    device: Device,
    batch: usize,
    merged: Option<Model>,
}

impl AdaptedForward {
    /// `model_dir`: the checkpoint the merged GPU copies are made from.
    pub fn new(model_dir: &Path, data: Arc<Dataset>, device: Device, batch: usize) -> AdaptedForward {
        AdaptedForward { model_dir: model_dir.to_path_buf(), data, device, batch, merged: None }
    }

    pub fn data(&self) -> &Dataset {
        &self.data
    }

    /// Forgets the merged model: the adapter is about to change.
    pub fn reset(&mut self) {
        self.merged = None;
    }

    /// Split rows `rows` through `cpu_model` with `adapter` in place, or through its merged copy on the GPU.
    pub fn forward(&mut self, cpu_model: &Model, adapter: &LoraAdapter, rows: &[usize]) -> Result<Predicted> {
        if matches!(self.device, Device::Cpu) {
            return forward_rows(cpu_model, &self.data, rows, &Device::Cpu, self.batch, Some("predict"));
        }
        if self.merged.is_none() {
            self.merged = Some(Model::load_merged(&self.model_dir, &self.device, adapter)?);
        }
        let merged = self.merged.as_ref().expect("made above");
        forward_rows(merged, &self.data, rows, &self.device, self.batch, Some("predict"))
    }
}

/// LoRA on the blocks plus a head, trained on the CPU model; predictions from the adapted model (`AdaptedForward`).
pub struct LoraLearner {
    model: Model,
    config: LoraConfig,
    classes: usize,
    adapter: Option<LoraAdapter>,
    adapted: AdaptedForward,
}

impl LoraLearner {
    /// Trains on `model` (on the CPU, loaded from `model_dir`, which the merged GPU copies are made from).
    pub fn new(
        model: Model,
        model_dir: &Path,
        config: LoraConfig,
        data: Arc<Dataset>,
        device: Device,
        batch: usize,
    ) -> Result<LoraLearner> {
        model.pooled_features()?; // a model with no image head (CLIP) is refused before any training
        let classes = data.classes;
        let adapted = AdaptedForward::new(model_dir, data, device, batch);
        Ok(LoraLearner { model, config, classes, adapter: None, adapted })
    }
}

impl Learner for LoraLearner {
    fn fit(&mut self, rows: &[usize], labels: &[usize], opts: &TrainOptions, seed: u64) -> Result<()> {
        self.model.clear_adapters();
        self.adapted.reset();
        let mut adapter = LoraAdapter::fresh(&mut self.model, self.config.clone(), Some(self.classes), seed)?;
        adapter.attach(&mut self.model, false)?;
        let images = self.adapted.data().pixels(rows)?;
        train::train_image_classifier(&mut self.model, &mut adapter, &images, labels, opts, |_| {})?;
        self.adapter = Some(adapter);
        Ok(())
    }

    fn predict(&mut self, rows: &[usize]) -> Result<Predicted> {
        let adapter = self.adapter.as_ref().ok_or_else(|| Error::invalid("lora", "predict before fit"))?;
        self.adapted.forward(&self.model, adapter, rows)
    }
}
