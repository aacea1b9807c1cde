//! One error type for the library. Every variant names what is at fault (file, tensor, field, line) so the
//! CLI can print it as is and exit non-zero; nothing in the library panics on bad input.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: not a valid safetensors file: {reason}")]
    BadSafetensors { path: PathBuf, reason: String },

    #[error("{path}: tensor `{tensor}`: {reason}")]
    Tensor { path: PathBuf, tensor: String, reason: String },

    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{path}: field `{field}`: {reason}")]
    Field { path: PathBuf, field: String, reason: String },

    #[error("{path}: unsupported architecture `{arch}` (supported: {supported})")]
    UnknownArchitecture { path: PathBuf, arch: String, supported: String },

    #[error("{path}: cannot decode image: {reason}")]
    Image { path: PathBuf, reason: String },

    #[error("{op}: shape mismatch: {reason}")]
    Shape { op: &'static str, reason: String },

    #[error("device `{device}` unavailable: {reason}")]
    DeviceUnavailable { device: String, reason: String },

    /// A GPU kernel could not be found, compiled, loaded or launched, or its arguments were rejected.
    #[error("kernel `{name}`: {reason}")]
    Kernel { name: String, reason: String },

    /// NVRTC rejected a kernel source; `log` is NVRTC's log (file, line, caret).
    #[error("NVRTC failed to compile `{kernel}`:\n{log}")]
    Nvrtc { kernel: String, log: String },

    #[error("{context}: {reason}")]
    Invalid { context: String, reason: String },
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    pub fn field(path: impl AsRef<Path>, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Field { path: path.as_ref().to_path_buf(), field: field.into(), reason: reason.into() }
    }
    pub fn tensor(path: impl AsRef<Path>, tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tensor { path: path.as_ref().to_path_buf(), tensor: tensor.into(), reason: reason.into() }
    }
    pub fn invalid(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { context: context.into(), reason: reason.into() }
    }
    pub fn kernel(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Kernel { name: name.into(), reason: reason.into() }
    }
    pub fn shape(op: &'static str, reason: impl Into<String>) -> Self {
        Error::Shape { op, reason: reason.into() }
    }
}

/// `bail!(Error::…)`-style early return with an `Error::Invalid`.
#[macro_export]
macro_rules! bail {
    ($ctx:expr, $($fmt:tt)*) => {
        return Err($crate::Error::invalid($ctx, format!($($fmt)*)))
    };
}
