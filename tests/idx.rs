//! IDX reader (MNIST / Fashion-MNIST layout) on small files the test writes: plain and gzipped, split
//! loading with count checks, and every malformed-header case giving an error that names file and field.

use std::io::Write;
use std::path::Path;

use cpeal::data::{idx::parse_idx, read_idx, read_idx_images, read_idx_labels, read_split, FASHION_MNIST_CLASSES};

/// IDX bytes: 00 00 08 <ndims>, big-endian u32 dims, data.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn pixels(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn reads_images_and_labels_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let px = pixels(3 * 28 * 28);
    std::fs::write(dir.path().join("imgs"), idx_bytes(&[3, 28, 28], &px)).unwrap();
    std::fs::write(dir.path().join("imgs.gz"), gz(&idx_bytes(&[3, 28, 28], &px))).unwrap();
    std::fs::write(dir.path().join("labels.gz"), gz(&idx_bytes(&[3], &[9, 0, 4]))).unwrap();

    for name in ["imgs", "imgs.gz"] {
        let images = read_idx_images(&dir.path().join(name)).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (3, 28, 28));
        assert_eq!(images.image(1).unwrap(), &px[784..1568]);
        assert!(images.image(3).is_none());
    }
    assert_eq!(read_idx_labels(&dir.path().join("labels.gz")).unwrap(), vec![9, 0, 4]);
}

#[test]
fn split_pairs_images_with_labels_and_prefers_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), gz(&idx_bytes(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]))).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[3, 8])).unwrap();
    let (images, labels) = read_split(d, "t10k", 10).unwrap();
    assert_eq!(images.image(1).unwrap(), &[5, 6, 7, 8]);
    assert_eq!(labels, vec![3, 8]);
    assert_eq!(FASHION_MNIST_CLASSES[labels[1] as usize], "Bag");
}

#[test]
fn split_with_mismatched_counts_or_bad_labels_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("train-images-idx3-ubyte"), idx_bytes(&[2, 1, 1], &[0, 0])).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_bytes(&[3], &[0, 1, 2])).unwrap();
    let err = read_split(d, "train", 10).unwrap_err().to_string();
    assert!(err.contains("train-labels-idx1-ubyte") && err.contains("3 labels for 2 images"), "{err}");

    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_bytes(&[2], &[0, 10])).unwrap();
    let err = read_split(d, "train", 10).unwrap_err().to_string();
    assert!(err.contains("data[1]") && err.contains("label 10"), "{err}");

    let err = read_split(d, "t10k", 10).unwrap_err().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
}

fn err_of(bytes: &[u8]) -> String {
    parse_idx(Path::new("x.idx"), bytes).unwrap_err().to_string()
}

#[test]
fn malformed_headers_name_the_field() {
    let ok = idx_bytes(&[2, 2], &[1, 2, 3, 4]);
    assert_eq!(parse_idx(Path::new("x.idx"), &ok).unwrap().dims, vec![2, 2]);

    let e = err_of(&[0, 0]);
    assert!(e.contains("x.idx") && e.contains("magic"), "{e}");
    let mut bad_magic = ok.clone();
    bad_magic[0] = 0x50;
    assert!(err_of(&bad_magic).contains("magic"));
    let mut float_type = ok.clone();
    float_type[2] = 0x0d;
    assert!(err_of(&float_type).contains("0x0d"));
    let e = err_of(&ok[..9]);
    assert!(e.contains("dims[1]"), "{e}");
    let e = err_of(&ok[..ok.len() - 1]);
    assert!(e.contains("data") && e.contains("truncated"), "{e}");
    let mut long = ok.clone();
    long.push(0);
    assert!(err_of(&long).contains("trailing"));
    assert!(err_of(&[0, 0, 8, 0]).contains("zero dimensions"));
}

#[test]
fn wrong_rank_bad_gzip_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels");
    std::fs::write(&labels, idx_bytes(&[4], &[0, 1, 2, 3])).unwrap();
    let e = read_idx_images(&labels).unwrap_err().to_string();
    assert!(e.contains("labels") && e.contains("3 dimensions"), "{e}");
    let images = dir.path().join("images");
    std::fs::write(&images, idx_bytes(&[1, 2, 2], &[0; 4])).unwrap();
    assert!(read_idx_labels(&images).unwrap_err().to_string().contains("1 dimension"));

    let broken = dir.path().join("broken.gz");
    let mut z = gz(&idx_bytes(&[4], &[0, 1, 2, 3]));
    z.truncate(z.len() / 2);
    std::fs::write(&broken, z).unwrap();
    let e = read_idx(&broken).unwrap_err().to_string();
    assert!(e.contains("broken.gz") && e.contains("gzip"), "{e}");

    let e = read_idx(&dir.path().join("nope")).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}
