//! The experiment's images: an MNIST-layout split whose row ranges form the unlabelled pool and the test set.
//! Images stay as their raw bytes and are preprocessed for the model batch by batch, when a forward needs
//! them; pool positions (0..pool) are what the selection engine sees, split rows are what files record.

use std::path::Path;

use super::config::DataConfig;
use crate::data::idx::{read_split, IdxImages};
use crate::error::{Error, Result};
use crate::preprocess::Preprocessor;
use crate::tensor::Tensor;

pub struct Dataset {
    images: IdxImages,
    labels: Vec<usize>,
    /// Split rows `[start, end)` of the pool and of the test set.
    pool: [usize; 2],
    test: [usize; 2],
    pub classes: usize,
    pre: Preprocessor,
}

impl Dataset {
    /// Reads `cfg`'s split; `config` names the experiment file in errors.
    pub fn load(cfg: &DataConfig, pre: Preprocessor, config: &Path) -> Result<Dataset> {
        let (images, labels) = read_split(&cfg.idx, &cfg.split, cfg.classes.unwrap_or(256))?;
        let labels: Vec<usize> = labels.into_iter().map(usize::from).collect();
        for (field, [_, end]) in [("data.pool", cfg.pool), ("data.test", cfg.test)] {
            if end > images.count {
                let why = format!("rows up to {end}, but split `{}` has {} images", cfg.split, images.count);
                return Err(Error::field(config, field, why));
            }
        }
        let used = labels[cfg.pool[0]..cfg.pool[1]].iter().chain(&labels[cfg.test[0]..cfg.test[1]]);
        let classes = cfg.classes.unwrap_or_else(|| used.max().map_or(0, |m| m + 1));
        Ok(Dataset { images, labels, pool: cfg.pool, test: cfg.test, classes, pre })
    }

    pub fn pool_size(&self) -> usize {
        self.pool[1] - self.pool[0]
    }

    /// The split rows of the pool, in pool order.
    pub fn pool_rows(&self) -> Vec<usize> {
        (self.pool[0]..self.pool[1]).collect()
    }

    pub fn test_rows(&self) -> Vec<usize> {
        (self.test[0]..self.test[1]).collect()
    }

    /// The split row of pool position `i`.
    pub fn pool_row(&self, i: usize) -> usize {
        self.pool[0] + i
    }

    /// The pool position of split row `row`, if the pool holds it.
    pub fn pool_position(&self, row: usize) -> Option<usize> {
        (self.pool[0]..self.pool[1]).contains(&row).then(|| row - self.pool[0])
    }

    pub fn labels_of(&self, rows: &[usize]) -> Vec<usize> {
        rows.iter().map(|&r| self.labels[r]).collect()
    }

    /// Split rows `rows`, preprocessed for the model: `[rows, 3, H, W]` on the CPU.
    pub fn pixels(&self, rows: &[usize]) -> Result<Tensor> {
        self.pre.idx_batch(&self.images, rows)
    }
}
