//! The labelled images `cpeal train` and `cpeal eval` read: a batch file (`pixel_values` + int64 `labels`), or
//! images of an MNIST-layout dataset (Fashion-MNIST) preprocessed for the model, all of a split's first
//! `--limit`, or the rows an index file lists (one per line, as `cpeal select --out` writes them).

use std::path::{Path, PathBuf};

use cpeal::data::idx::read_split;
use cpeal::models::Model;
use cpeal::select::input::read_integers_checked;
use cpeal::weights::SafetensorsFile;
use cpeal::{Error, Tensor};

#[derive(clap::Args)]
pub struct Source {
    /// safetensors file with `pixel_values` [N, 3, H, W] (f32, normalised) and `labels` [N] (int64)
    #[arg(long, required_unless_present = "idx", conflicts_with = "idx")]
    pub data: Option<PathBuf>,
    /// an MNIST-layout dataset directory (Fashion-MNIST), instead of --data
    #[arg(long)]
    pub idx: Option<PathBuf>,
    #[arg(long, default_value = "train", requires = "idx")]
    pub split: String,
    /// with --idx: the rows to take, one index per line (default: the first --limit)
    #[arg(long, requires = "idx")]
    pub indices: Option<PathBuf>,
    /// with --idx and no --indices: how many rows from the start
    #[arg(long, requires = "idx")]
    pub limit: Option<usize>,
}

impl Source {
    /// What to name in errors about the labels.
    pub fn path(&self) -> &Path {
        self.data.as_deref().or(self.idx.as_deref()).expect("clap requires one")
    }

    /// The images (on the CPU) and their labels; `model` and `model_dir` give a dataset's preprocessing.
    pub fn read(&self, model: &Model, model_dir: &Path) -> cpeal::Result<(Tensor, Vec<usize>)> {
        match (&self.data, &self.idx) {
            (Some(file), _) => read_batch(file),
            (None, Some(dir)) => self.read_idx(dir, model, model_dir),
            (None, None) => Err(Error::invalid("data", "give --data or --idx")),
        }
    }

    fn read_idx(&self, dir: &Path, model: &Model, model_dir: &Path) -> cpeal::Result<(Tensor, Vec<usize>)> {
        let (images, labels) = read_split(dir, &self.split, 256)?;
        let rows: Vec<usize> = match &self.indices {
            Some(file) => read_indices(file, images.count)?,
            None => (0..self.limit.unwrap_or(images.count).min(images.count)).collect(),
        };
        if rows.is_empty() {
            return Err(Error::invalid(dir.display().to_string(), "no images to read"));
        }
        let pre = cpeal::preprocess::Preprocessor::for_model(model, model_dir)?;
        let tensor = pre.idx_batch(&images, &rows)?;
        Ok((tensor, rows.iter().map(|&i| usize::from(labels[i])).collect()))
    }
}

/// `pixel_values` and `labels` (non-negative) of a batch file.
pub fn read_batch(path: &Path) -> cpeal::Result<(Tensor, Vec<usize>)> {
    let file = SafetensorsFile::open(path)?;
    let images = file.get("pixel_values", None)?;
    let (raw, _) = file.get_i64("labels")?;
    let labels = raw
        .iter()
        .enumerate()
        .map(|(row, &l)| {
            usize::try_from(l).map_err(|_| Error::tensor(path, "labels", format!("row {row} has label {l}")))
        })
        .collect::<cpeal::Result<Vec<_>>>()?;
    Ok((images, labels))
}

/// Row indices, one per line, each below `count`; errors name the file and line.
fn read_indices(file: &Path, count: usize) -> cpeal::Result<Vec<usize>> {
    read_integers_checked(file, "row index", |row| {
        (row >= count).then(|| format!("row {row} is not below {count}, the split's size"))
    })
}
