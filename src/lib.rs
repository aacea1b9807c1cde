//! cpeal — parameter-efficient active learning with uncertainty calibration on vision(-language)
//! transformers. See `README.md` for use and `ARCHITECTURE.md` for the layout.

pub mod adapters;
pub mod al;
pub mod autograd;
pub mod convert;
pub mod data;
pub mod device;
pub mod error;
pub mod gpu;
pub mod images;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod preprocess;
pub mod progress;
pub mod seed;
pub mod select;
pub mod tensor;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use device::{Device, DeviceKind, StorageDtype};
pub use error::{Error, Result};
pub use tensor::Tensor;
