//! The IDX format of MNIST and Fashion-MNIST: `00 00 <type> <ndims>`, `ndims` big-endian u32 sizes, then the
//! values. Only unsigned-byte data (type 0x08) is used by these datasets. Files may be gzipped (`1f 8b`).
//! Errors name the file and the header field (`magic`, `dims[1]`, `data`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The ten Fashion-MNIST classes, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// `count` grayscale images of `rows` × `cols` bytes, row-major, one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Image `i` as `rows * cols` bytes; `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.rows * self.cols;
        self.pixels.get(i * n..(i + 1) * n)
    }
}

/// A decoded IDX file: its dimensions and unsigned-byte values.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Read an IDX file of unsigned bytes (plain or gzipped).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) { gunzip(path, &raw)? } else { raw };
    parse_idx(path, &bytes)
}

fn gunzip(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|e| Error::field(path, "gzip", format!("cannot decompress: {e}")))?;
    Ok(out)
}

/// Decode IDX bytes; `path` only names the source in errors.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    let magic =
        bytes.get(..4).ok_or_else(|| Error::field(path, "magic", format!("file has {} bytes, need 4", bytes.len())))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::field(
            path,
            "magic",
            format!("bytes {magic:02x?} do not start with 00 00 (not an IDX file)"),
        ));
    }
    if magic[2] != 0x08 {
        return Err(Error::field(path, "magic", format!("data type 0x{:02x} is not unsigned byte (0x08)", magic[2])));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(Error::field(path, "magic", "zero dimensions"));
    }
    let mut dims = Vec::with_capacity(ndims);
    for i in 0..ndims {
        let at = 4 + 4 * i;
        let b = bytes.get(at..at + 4).ok_or_else(|| Error::field(path, format!("dims[{i}]"), "truncated header"))?;
        dims.push(u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
    }
    let need = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let need = need.ok_or_else(|| Error::field(path, "dims", format!("{dims:?} overflows")))?;
    let data = &bytes[4 + 4 * ndims..];
    if data.len() != need {
        let what = if data.len() < need { "truncated" } else { "trailing bytes" };
        return Err(Error::field(
            path,
            "data",
            format!("{what}: dims {dims:?} need {need} bytes, file has {}", data.len()),
        ));
    }
    Ok(IdxArray { dims, data: data.to_vec() })
}

/// Read an image file: dims `[N, rows, cols]`.
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let a = read_idx(path)?;
    let [count, rows, cols] = a.dims[..] else {
        return Err(Error::field(path, "magic", format!("images need 3 dimensions, file has {}", a.dims.len())));
    };
    Ok(IdxImages { count, rows, cols, pixels: a.data })
}

/// Read a label file: dims `[N]`.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let a = read_idx(path)?;
    if a.dims.len() != 1 {
        return Err(Error::field(path, "magic", format!("labels need 1 dimension, file has {}", a.dims.len())));
    }
    Ok(a.data)
}

/// `dir/name`, or `dir/name.gz` when only the gzipped file exists.
pub fn idx_path(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if !plain.exists() && gz.exists() {
        gz
    } else {
        plain
    }
}

/// One split (`train` or `t10k`) of an MNIST-layout directory: images and labels, with matching counts and
/// labels below `num_classes`.
pub fn read_split(dir: &Path, split: &str, num_classes: usize) -> Result<(IdxImages, Vec<u8>)> {
    let images_path = idx_path(dir, &format!("{split}-images-idx3-ubyte"));
    let labels_path = idx_path(dir, &format!("{split}-labels-idx1-ubyte"));
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != images.count {
        let reason = format!("{} labels for {} images in {}", labels.len(), images.count, images_path.display());
        return Err(Error::field(&labels_path, "dims[0]", reason));
    }
    if let Some(i) = labels.iter().position(|&l| usize::from(l) >= num_classes) {
        return Err(Error::field(&labels_path, format!("data[{i}]"), format!("label {} ≥ {num_classes}", labels[i])));
    }
    Ok((images, labels))
}
