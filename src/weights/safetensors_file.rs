//! One memory-mapped `.safetensors` file: validated header, zero-copy f32 views, one-copy f16/bf16 conversion,
//! and a writer for outputs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, TensorInfo, View};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::tensor::{CpuStorage, Storage, Tensor};

pub struct SafetensorsFile {
    path: PathBuf,
    map: Arc<Mmap>,
    /// byte offset of the data section inside the file
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<SafetensorsFile> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; cpeal never writes to a file it has mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&map)
            .map_err(|e| Error::BadSafetensors { path: path.to_path_buf(), reason: describe(&e, map.len()) })?;
        let tensors = metadata.tensors().into_iter().map(|(name, info)| (name, info.clone())).collect();
        Ok(SafetensorsFile { path: path.to_path_buf(), map: Arc::new(map), data_start: 8 + header_len, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    fn info_or_missing(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor { path: self.path.clone(), tensor: name.to_string() })
    }

    fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.map[self.data_start + info.data_offsets.0..self.data_start + info.data_offsets.1]
    }

    /// `name` as an f32 tensor (zero-copy when the file holds aligned f32), checked against `expected`.
    pub fn get(&self, name: &str, expected: Option<&[usize]>) -> Result<Tensor> {
        let info = self.info_or_missing(name)?;
        if let Some(expected) = expected {
            if info.shape != expected {
                return Err(Error::tensor(
                    &self.path,
                    name,
                    format!("shape {:?} in the file, but the config implies {expected:?}", info.shape),
                ));
            }
        }
        let numel: usize = info.shape.iter().product();
        let start = self.data_start + info.data_offsets.0;
        let bytes = self.bytes(info);
        let storage = match info.dtype {
            Dtype::F32 if start % 4 == 0 => {
                CpuStorage::Mapped { map: Arc::clone(&self.map), byte_offset: start, len: numel }
            }
            Dtype::F32 => {
                CpuStorage::owned(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
            Dtype::F16 => {
                CpuStorage::owned(bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
            }
            Dtype::BF16 => {
                CpuStorage::owned(bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
            }
            Dtype::F64 => CpuStorage::owned(
                bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            ),
            other => {
                return Err(Error::tensor(&self.path, name, format!("dtype {other:?}, expected F32, F16 or BF16")))
            }
        };
        Ok(Tensor::from_storage(Storage::Cpu(storage), info.shape.clone()))
    }

    /// The raw little-endian bytes of `name` with its dtype and shape, borrowed from the map (for readers that
    /// stream rows instead of converting the whole tensor).
    pub fn raw(&self, name: &str) -> Result<(Dtype, &[usize], &[u8])> {
        let info = self.info_or_missing(name)?;
        Ok((info.dtype, &info.shape, self.bytes(info)))
    }

    /// An integer tensor (I64 or I32) as i64 values with its shape.
    pub fn get_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let info = self.info_or_missing(name)?;
        let bytes = self.bytes(info);
        let values = match info.dtype {
            Dtype::I64 => bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::I32 => bytes.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect(),
            other => return Err(Error::tensor(&self.path, name, format!("dtype {other:?}, expected I64 or I32"))),
        };
        Ok((values, info.shape.clone()))
    }

    /// The dtype name of `name` ("F32", "BF16", …).
    pub fn dtype_name(&self, name: &str) -> Option<String> {
        self.tensors.get(name).map(|i| format!("{:?}", i.dtype))
    }
}

fn describe(err: &safetensors::SafeTensorError, file_len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match err {
        E::HeaderTooSmall => {
            format!("file is {file_len} bytes, too short for a safetensors header")
        }
        E::InvalidHeaderLength => "header length points past the end of the file (truncated or not safetensors)".into(),
        E::MetadataIncompleteBuffer => "data section does not match the header (truncated or padded file)".into(),
        other => other.to_string(),
    }
}

struct F32View<'a> {
    shape: Vec<usize>,
    data: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(bytemuck::cast_slice(self.data))
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// Write f32 tensors to `path` (host copies are made for device tensors). `metadata` goes in `__metadata__`.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let host: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(name, t)| Ok((name.to_string(), t.shape().to_vec(), t.to_vec()?)))
        .collect::<Result<_>>()?;
    let views = host.iter().map(|(name, shape, data)| (name.as_str(), F32View { shape: shape.clone(), data }));
    safetensors::serialize_to_file(views, metadata, path)
        .map_err(|e| Error::BadSafetensors { path: path.to_path_buf(), reason: format!("cannot write: {e}") })
}
