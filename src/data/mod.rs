//! Datasets on disk: IDX files (MNIST, Fashion-MNIST).

pub mod idx;

pub use idx::{read_idx, read_idx_images, read_idx_labels, read_split, IdxArray, IdxImages, FASHION_MNIST_CLASSES};
