//! Image inputs for `embed --images` / `zero-shot`: files and folders (searched recursively, sorted) streamed
//! as preprocessed `[B, 3, H, W]` batches. Each batch is decoded in parallel (rayon) on a background thread
//! that stays at most one batch ahead of the consumer, so memory is bounded whatever the folder size.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::preprocess::{decode_image, Preprocessor};
use crate::progress::Progress;
use crate::tensor::Tensor;

/// File extensions picked up when a folder is expanded (case-insensitive). Explicit files are taken
/// whatever their name and decoded by content.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// The files of one batch and their pixels, `[B, 3, H, W]`.
pub type Batch = (Vec<PathBuf>, Tensor);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSource {
    files: Vec<PathBuf>,
}

impl ImageSource {
    /// Explicit files in the given order; each folder replaced by its images, recursively, in sorted order.
    pub fn from_args(paths: &[PathBuf]) -> Result<ImageSource> {
        if paths.is_empty() {
            crate::bail!("images", "no image files or folders given");
        }
        let mut files = Vec::new();
        for path in paths {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.is_dir() {
                let mut found = Vec::new();
                collect_images(path, &mut found)?;
                if found.is_empty() {
                    return Err(Error::invalid(
                        path.display().to_string(),
                        format!("no images found in this folder (looked for {})", IMAGE_EXTENSIONS.join(", ")),
                    ));
                }
                found.sort();
                files.extend(found);
            } else {
                files.push(path.clone());
            }
        }
        Ok(ImageSource { files })
    }

    pub fn from_files(files: Vec<PathBuf>) -> ImageSource {
        ImageSource { files }
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Streams `[B, 3, H, W]` batches in file order, with a progress report on stderr
    /// ([`Batches::quiet`] turns it off). The first error (naming its file) ends the stream.
    pub fn batches(&self, preprocessor: &Preprocessor, batch_size: usize) -> Result<Batches> {
        if batch_size == 0 {
            crate::bail!("images", "batch size must be at least 1");
        }
        let (tx, rx) = sync_channel::<Result<Batch>>(1);
        let files = self.files.clone();
        let pre = preprocessor.clone();
        let worker = std::thread::Builder::new()
            .name("cpeal-image-prefetch".into())
            .spawn(move || {
                for chunk in files.chunks(batch_size) {
                    let batch = load_batch(chunk, &pre);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::invalid("images", format!("cannot start the prefetch thread: {e}")))?;
        let progress = Some(Progress::new(self.files.len(), "images"));
        Ok(Batches { rx, worker: Some(worker), progress, failed: false })
    }
}

/// Iterator over preprocessed batches; see [`ImageSource::batches`].
pub struct Batches {
    rx: Receiver<Result<Batch>>,
    worker: Option<JoinHandle<()>>,
    progress: Option<Progress>,
    failed: bool,
}

impl Batches {
    /// No progress report.
    pub fn quiet(mut self) -> Batches {
        self.progress = None;
        self
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.failed {
            return None;
        }
        match self.rx.recv() {
            Ok(Ok(batch)) => {
                if let Some(p) = &mut self.progress {
                    p.inc(batch.0.len());
                }
                Some(Ok(batch))
            }
            Ok(Err(e)) => {
                self.failed = true;
                Some(Err(e))
            }
            Err(_) => {
                self.finish();
                None
            }
        }
    }
}

impl Batches {
    fn finish(&mut self) {
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                self.failed = true;
            }
        }
        if let Some(p) = &mut self.progress {
            p.finish();
        }
        self.progress = None;
    }
}

/// Decodes and preprocesses `files` in parallel into one `[B, 3, H, W]` tensor.
pub fn load_batch(files: &[PathBuf], pre: &Preprocessor) -> Result<Batch> {
    let images: Vec<((usize, usize), Vec<f32>)> = files
        .par_iter()
        .map(|path| {
            let image = decode_image(path)?;
            let size = pre.output_size_for(image.width() as usize, image.height() as usize);
            Ok((size, pre.preprocess_image(&image)))
        })
        .collect::<Result<_>>()?;
    let (h, w) = images.first().map(|(s, _)| *s).unwrap_or((0, 0));
    let mut data = Vec::with_capacity(files.len() * 3 * h * w);
    for (path, ((ih, iw), pixels)) in files.iter().zip(images) {
        if (ih, iw) != (h, w) {
            return Err(Error::Image {
                path: path.clone(),
                reason: format!(
                    "preprocessed to {ih}x{iw} but the batch is {h}x{w}; without a center crop or a fixed \
                     resize, images of one batch need the same aspect ratio"
                ),
            });
        }
        data.extend_from_slice(&pixels);
    }
    Ok((files.to_vec(), Tensor::from_vec(data, &[files.len(), 3, h, w])?))
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            collect_images(&path, out)?;
        } else if has_image_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn has_image_extension(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    ext.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}
