//! The experiment's images: an unlabelled pool and a test set, from an MNIST-layout split (row ranges), a
//! CoOp/PCB split file (its train and test lists), two folders with a subfolder per class, or two CSV files.
//! Images are decoded and preprocessed for the model batch by batch, when a forward needs them.
//!
//! Rows: pool positions (0..pool) are what the selection engine sees; *rows* are what files record. For an IDX
//! split a row is the split's own row; for file lists, pool files are rows 0..pool and test files follow.

use std::path::{Path, PathBuf};

use super::config::DataConfig;
use crate::data::idx::{read_split, IdxImages};
use crate::error::{Error, Result};
use crate::preprocess::Preprocessor;
use crate::tensor::Tensor;

enum Images {
    Idx(IdxImages),
    Files(Vec<PathBuf>),
}

pub struct Dataset {
    images: Images,
    /// By row.
    labels: Vec<usize>,
    /// Rows `[start, end)` of the pool and of the test set.
    pool: [usize; 2],
    test: [usize; 2],
    pub classes: usize,
    /// In label order: `data.classnames`, else the split file's or the class folders' names.
    pub classnames: Option<Vec<String>>,
    pre: Preprocessor,
}

impl Dataset {
    /// Reads `cfg`'s source (checked by `Experiment::read`); `config` names the experiment file in errors.
    pub fn load(cfg: &DataConfig, pre: Preprocessor, config: &Path) -> Result<Dataset> {
        let (images, labels, pool, test, classes, names) = if let Some(dir) = &cfg.idx {
            load_idx(cfg, dir, config)?
        } else {
            let root = cfg.image_root.as_deref();
            let (pool, test, names) = match (&cfg.split_file, &cfg.pool_folder, &cfg.test_folder, &cfg.pool_csv) {
                (Some(file), ..) => read_split_file(file, root)?,
                (None, Some(pool), Some(test), _) => read_class_folders(pool, test)?,
                (None, None, _, Some(pool)) => {
                    let test = cfg.test_csv.as_ref().ok_or_else(|| Error::field(config, "data.test_csv", "missing"))?;
                    read_csv_lists(pool, test, root)?
                }
                _ => return Err(Error::field(config, "data", "no image source")),
            };
            let classes = pool.iter().chain(&test).map(|(_, l)| l + 1).max().unwrap_or(0).max(names.len());
            if classes > MAX_CLASSES {
                let why = format!("a label of {}: more than {MAX_CLASSES} classes", classes - 1);
                return Err(Error::field(config, "data", why));
            }
            let names = (names.len() == classes && names.iter().all(Option::is_some))
                .then(|| names.into_iter().flatten().collect());
            let (np, nt) = (pool.len(), test.len());
            let (files, labels): (Vec<PathBuf>, Vec<usize>) = pool.into_iter().chain(test).unzip();
            (Images::Files(files), labels, [0, np], [np, np + nt], classes, names)
        };
        let classes = cfg.classes.unwrap_or(classes);
        let classnames = match &cfg.classnames {
            Some(given) if given.len() != classes => {
                let why = format!("{} names for {classes} classes", given.len());
                return Err(Error::field(config, "data.classnames", why));
            }
            Some(given) => Some(given.clone()),
            None => names.filter(|n: &Vec<String>| n.len() == classes),
        };
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            let why = format!("row {row} has label {label}, but data.classes is {classes}");
            return Err(Error::field(config, "data.classes", why));
        }
        if pool[0] == pool[1] || test[0] == test[1] {
            return Err(Error::field(
                config,
                "data",
                format!("{} pool and {} test images", pool[1] - pool[0], test[1] - test[0]),
            ));
        }
        Ok(Dataset { images, labels, pool, test, classes, classnames, pre })
    }

    pub fn pool_size(&self) -> usize {
        self.pool[1] - self.pool[0]
    }

    /// The rows of the pool, in pool order.
    pub fn pool_rows(&self) -> Vec<usize> {
        (self.pool[0]..self.pool[1]).collect()
    }

    pub fn test_rows(&self) -> Vec<usize> {
        (self.test[0]..self.test[1]).collect()
    }

    /// The row of pool position `i`.
    pub fn pool_row(&self, i: usize) -> usize {
        self.pool[0] + i
    }

    /// The pool position of row `row`, if the pool holds it.
    pub fn pool_position(&self, row: usize) -> Option<usize> {
        (self.pool[0]..self.pool[1]).contains(&row).then(|| row - self.pool[0])
    }

    pub fn labels_of(&self, rows: &[usize]) -> Vec<usize> {
        rows.iter().map(|&r| self.labels[r]).collect()
    }

    /// The image file of each pool row, for file-list datasets (what the run directory's `pool.txt` lists).
    pub fn pool_files(&self) -> Option<Vec<&Path>> {
        match &self.images {
            Images::Idx(_) => None,
            Images::Files(files) => Some(self.pool_rows().iter().map(|&r| files[r].as_path()).collect()),
        }
    }

    /// Rows `rows`, preprocessed for the model: `[rows, 3, H, W]` on the CPU.
    pub fn pixels(&self, rows: &[usize]) -> Result<Tensor> {
        match &self.images {
            Images::Idx(images) => self.pre.idx_batch(images, rows),
            Images::Files(files) => {
                let batch: Vec<PathBuf> = rows.iter().map(|&r| files[r].clone()).collect();
                Ok(crate::images::load_batch(&batch, &self.pre)?.1)
            }
        }
    }
}

type Loaded = (Images, Vec<usize>, [usize; 2], [usize; 2], usize, Option<Vec<String>>);

fn load_idx(cfg: &DataConfig, dir: &Path, config: &Path) -> Result<Loaded> {
    let (images, labels) = read_split(dir, &cfg.split, cfg.classes.unwrap_or(256))?;
    let labels: Vec<usize> = labels.into_iter().map(usize::from).collect();
    let (pool, test) = (cfg.pool.unwrap_or_default(), cfg.test.unwrap_or_default());
    for (field, [_, end]) in [("data.pool", pool), ("data.test", test)] {
        if end > images.count {
            let why = format!("rows up to {end}, but split `{}` has {} images", cfg.split, images.count);
            return Err(Error::field(config, field, why));
        }
    }
    let used = labels[pool[0]..pool[1]].iter().chain(&labels[test[0]..test[1]]);
    let classes = used.max().map_or(0, |m| m + 1);
    Ok((Images::Idx(images), labels, pool, test, classes, None))
}

type Labelled = Vec<(PathBuf, usize)>;
/// A source's pool and test images, and the name of each label where it gives one.
type Lists = (Labelled, Labelled, Vec<Option<String>>);

/// CoOp's split file: `{"train": [[path, label, classname], …], "val": […], "test": […]}`.
fn read_split_file(file: &Path, root: Option<&Path>) -> Result<Lists> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::field(file, "json", e.to_string()))?;
    let root = root_or_folder_of(root, file);
    let mut names: Vec<Option<String>> = Vec::new();
    let mut list = |key: &str| -> Result<Labelled> {
        let entries = json
            .get(key)
            .and_then(|v| v.as_array())
            .ok_or_else(|| Error::field(file, key, "missing: a list of [path, label, classname]"))?;
        entries
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let path = e.get(0).and_then(|v| v.as_str());
                let label = e.get(1).and_then(|v| v.as_u64());
                match (path, label) {
                    (Some(p), Some(l)) => {
                        note_name(&mut names, l as usize, e.get(2).and_then(|v| v.as_str()));
                        Ok((root.join(p), l as usize))
                    }
                    _ => Err(Error::field(
                        file,
                        format!("{key}[{k}]"),
                        format!("expected [path, label, classname], got {e}"),
                    )),
                }
            })
            .collect()
    };
    let (train, test) = (list("train")?, list("test")?);
    Ok((train, test, names))
}

/// `root`, or else the folder holding `file`: where a list's relative image paths start.
fn root_or_folder_of(root: Option<&Path>, file: &Path) -> PathBuf {
    root.map(Path::to_path_buf).unwrap_or_else(|| file.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// More classes than any dataset has: a larger label is a mistake (and no name table is grown for it).
const MAX_CLASSES: usize = 1 << 20;

/// Records that `label` is called `name` (the first name given for a label stands).
fn note_name(names: &mut Vec<Option<String>>, label: usize, name: Option<&str>) {
    if label >= MAX_CLASSES {
        return;
    }
    if names.len() <= label {
        names.resize(label + 1, None);
    }
    if let (None, Some(name)) = (&names[label], name) {
        names[label] = Some(name.to_string());
    }
}

/// The pool's and the test set's CSV files (see `DataConfig`).
fn read_csv_lists(pool: &Path, test: &Path, root: Option<&Path>) -> Result<Lists> {
    let mut names = Vec::new();
    let pool = read_csv(pool, root, &mut names)?;
    let test = read_csv(test, root, &mut names)?;
    Ok((pool, test, names))
}

/// One CSV file: a header naming `path` and `label` columns (and optionally `classname`), a row per image.
fn read_csv(file: &Path, root: Option<&Path>, names: &mut Vec<Option<String>>) -> Result<Labelled> {
    let bad = |line: u64, why: String| Error::field(file, format!("line {line}"), why);
    let mut reader =
        csv::Reader::from_path(file).map_err(|e| Error::invalid(file.display().to_string(), e.to_string()))?;
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let column = |name: &str| header.iter().position(|h| h.trim() == name); // (csv drops a byte-order mark)
    let (Some(path_at), Some(label_at)) = (column("path"), column("label")) else {
        return Err(bad(1, format!("the header must name `path` and `label` columns; it has {:?}", header)));
    };
    let name_at = column("classname");
    let root = root_or_folder_of(root, file);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let (path, label) = (record.get(path_at).unwrap_or("").trim(), record.get(label_at).unwrap_or("").trim());
        let label: usize = label.parse().map_err(|_| bad(line, format!("label `{label}` is not a class index")))?;
        if path.is_empty() {
            return Err(bad(line, "no path".into()));
        }
        note_name(names, label, name_at.and_then(|k| record.get(k)).map(str::trim).filter(|n| !n.is_empty()));
        rows.push((root.join(path), label));
    }
    Ok(rows)
}

/// Two folders with a subfolder per class; the pool's subfolders, sorted by name, are the classes.
fn read_class_folders(pool: &Path, test: &Path) -> Result<Lists> {
    let classes = subfolders(pool)?;
    let mut lists = Vec::new();
    for dir in [pool, test] {
        let mut list = Vec::new();
        for name in subfolders(dir)? {
            let label = classes.iter().position(|c| *c == name).ok_or_else(|| {
                Error::invalid(dir.join(&name).display().to_string(), format!("class `{name}` is not among the pool's"))
            })?;
            let files = crate::images::ImageSource::from_args(&[dir.join(&name)])?;
            list.extend(files.files().iter().map(|f| (f.clone(), label)));
        }
        lists.push(list);
    }
    let test = lists.pop().unwrap_or_default();
    Ok((lists.pop().unwrap_or_default(), test, classes.into_iter().map(Some).collect()))
}

fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Error::invalid(dir.display().to_string(), "no class subfolders"));
    }
    Ok(names)
}
