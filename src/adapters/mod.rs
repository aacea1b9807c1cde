//! Adapters: the few parameters that are trained while the backbone stays frozen. `peft` reads and places
//! LoRA adapters (and the heads saved beside them) in peft's own format, so Python users can share them.

pub mod init;
pub mod peft;

pub use init::{fresh_classifier, fresh_lora};
pub use peft::{LoraAdapter, LoraConfig, PEFT_PREFIX};
