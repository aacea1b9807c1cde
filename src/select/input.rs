//! Reading a pool from disk: `logits` / `features` arrays from safetensors (f32, f16, bf16) or `.npy` (f32, f16,
//! f64; C order), memory-mapped so that f32 and half-precision data are streamed rather than loaded; and the
//! one-integer-per-line index and label files. Every error names the file and the field or line at fault.

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::Dtype;

use super::Mat;
use crate::error::{Error, Result};
use crate::weights::SafetensorsFile;

/// Element type of an array on disk (f64 `.npy` data is converted to f32 once when opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

enum Source {
    Safetensors(SafetensorsFile),
    Npy { map: Mmap, offset: usize, len: usize },
    Converted(Vec<f32>),
}

/// One array of a pool file, kept open (memory-mapped) while [`Mat`] views of it are in use.
pub struct ArrayFile {
    path: PathBuf,
    field: String,
    shape: Vec<usize>,
    elem: ElemType,
    source: Source,
}

impl ArrayFile {
    /// Open `field` of a safetensors file, or the array of a `.npy` file (any other extension is read as
    /// safetensors). `field` names the array in errors either way.
    pub fn open(path: &Path, field: &str) -> Result<ArrayFile> {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
            open_npy(path, field)
        } else {
            open_safetensors(path, field)
        }
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// "`path`: field `name`", as errors cite this array.
    pub fn describe(&self) -> String {
        format!("{}: field `{}`", self.path.display(), self.field)
    }

    /// The whole array viewed as a `[rows, cols]` matrix (`rows · cols` must equal the element count).
    pub fn matrix(&self, rows: usize, cols: usize) -> Result<Mat<'_>> {
        let name = self.describe();
        let bytes: &[u8] = match &self.source {
            Source::Safetensors(file) => file.raw(&self.field)?.2,
            Source::Npy { map, offset, len } => &map[*offset..*offset + *len],
            Source::Converted(values) => return Mat::from_f32(&values[..], rows, cols, &name),
        };
        match self.elem {
            ElemType::F32 => Mat::from_f32_bytes(bytes, rows, cols, &name),
            ElemType::F16 => Mat::from_f16_bytes(bytes, rows, cols, &name),
            ElemType::Bf16 => Mat::from_bf16_bytes(bytes, rows, cols, &name),
        }
    }
}

fn open_safetensors(path: &Path, field: &str) -> Result<ArrayFile> {
    let file = SafetensorsFile::open(path)?;
    let (dtype, shape, _) = file.raw(field)?;
    let elem = match dtype {
        Dtype::F32 => ElemType::F32,
        Dtype::F16 => ElemType::F16,
        Dtype::BF16 => ElemType::Bf16,
        other => return Err(Error::field(path, field, format!("dtype {other:?}; expected F32, F16 or BF16"))),
    };
    let shape = shape.to_vec();
    Ok(ArrayFile { path: path.to_path_buf(), field: field.to_string(), shape, elem, source: Source::Safetensors(file) })
}

fn open_npy(path: &Path, field: &str) -> Result<ArrayFile> {
    let bad = |reason: String| Error::field(path, field, reason);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
    if len < 10 {
        return Err(bad(format!("file is {len} bytes, too short for a .npy header")));
    }
    // SAFETY: read-only map; cpeal never writes to a file it has mapped.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let header = NpyHeader::parse(&map).map_err(bad)?;
    let item = match header.descr.as_str() {
        "<f4" => 4,
        "<f2" => 2,
        "<f8" => 8,
        other => {
            return Err(bad(format!("dtype '{other}'; expected little-endian f4, f2 or f8 ('<f4', '<f2', '<f8')")))
        }
    };
    if header.fortran_order {
        return Err(bad("Fortran-order array; save it in C order (np.ascontiguousarray)".into()));
    }
    let count = header.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let data_len = count.and_then(|c| c.checked_mul(item)).ok_or_else(|| bad("shape is too large".into()))?;
    if map.len() < header.data_offset + data_len {
        return Err(bad(format!(
            "shape {:?} needs {data_len} data bytes but the file has {} (truncated?)",
            header.shape,
            map.len().saturating_sub(header.data_offset)
        )));
    }
    let (offset, shape) = (header.data_offset, header.shape);
    let (elem, source) = match item {
        8 => {
            let values = map[offset..offset + data_len]
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect();
            (ElemType::F32, Source::Converted(values))
        }
        4 => (ElemType::F32, Source::Npy { map, offset, len: data_len }),
        _ => (ElemType::F16, Source::Npy { map, offset, len: data_len }),
    };
    Ok(ArrayFile { path: path.to_path_buf(), field: field.to_string(), shape, elem, source })
}

/// The parts of a `.npy` header cpeal uses.
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
    data_offset: usize,
}

impl NpyHeader {
    fn parse(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
        if !bytes.starts_with(b"\x93NUMPY") {
            return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
        }
        let (len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
            v => return Err(format!(".npy format version {v} is not supported")),
        };
        let text = bytes.get(start..start + len).ok_or("the .npy header runs past the end of the file")?;
        let text = std::str::from_utf8(text).map_err(|_| "the .npy header is not text")?;
        let descr = dict_value(text, "descr")?.trim_matches(|c| c == '\'' || c == '"').to_string();
        let fortran_order = dict_value(text, "fortran_order")?.starts_with("True");
        let shape_text = dict_value(text, "shape")?;
        let inner = shape_text.trim_start_matches('(').split(')').next().unwrap_or("");
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('L').parse::<usize>().map_err(|_| format!("bad shape entry '{s}' in header")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(NpyHeader { descr, fortran_order, shape, data_offset: start + len })
    }
}

/// The raw text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_value<'t>(text: &'t str, key: &str) -> std::result::Result<&'t str, String> {
    let pattern = format!("'{key}':");
    let at = text.find(&pattern).ok_or_else(|| format!("the .npy header has no '{key}'"))?;
    let rest = text[at + pattern.len()..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|e| e + 1) } else { rest.find([',', '}']) };
    Ok(&rest[..end.unwrap_or(rest.len())])
}

/// Read one non-negative integer per line (blank lines and surrounding spaces are ignored); errors name the
/// file and the 1-based line.
pub fn read_integers(path: &Path, what: &str) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut values = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value = line.parse::<usize>().map_err(|_| {
            Error::field(path, format!("line {}", line_no + 1), format!("'{line}' is not a non-negative {what}"))
        })?;
        values.push(value);
    }
    Ok(values)
}

/// [`read_integers`], each value held to `check`: None passes it, Some(why) is an error naming the file and
/// the value's line.
pub fn read_integers_checked(path: &Path, what: &str, check: impl Fn(usize) -> Option<String>) -> Result<Vec<usize>> {
    let values = read_integers(path, what)?;
    match values.iter().enumerate().find_map(|(k, &v)| check(v).map(|why| (k, why))) {
        Some((k, why)) => Err(Error::field(path, format!("line {}", line_of_entry(path, k)), why)),
        None => Ok(values),
    }
}

/// The 1-based line of the k-th non-blank line of an integer file (for errors that refer to an entry).
pub fn line_of_entry(path: &Path, k: usize) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).nth(k).map(|(n, _)| n + 1).unwrap_or(k + 1)
}
