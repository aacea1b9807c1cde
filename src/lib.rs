//! cpeal — parameter-efficient active learning with uncertainty calibration on vision(-language)
//! transformers. See `README.md` for use and `ARCHITECTURE.md` for the layout.

pub mod device;
pub mod error;
pub mod select;
pub mod tensor;
pub mod weights;

pub use device::{Device, DeviceKind};
pub use error::{Error, Result};
pub use tensor::Tensor;
