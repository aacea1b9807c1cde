//! Image folder expansion and batched, prefetched preprocessing.

use std::path::{Path, PathBuf};

use cpeal::images::{load_batch, ImageSource};
use cpeal::preprocess::Preprocessor;
use cpeal::Error;
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};

fn save(path: &Path, seed: u32, format: ImageFormat) {
    let img = ImageBuffer::from_fn(20 + seed % 7, 18 + seed % 5, |x, y| {
        Rgb([(x * seed % 256) as u8, (y * 3 + seed) as u8, ((x + y + seed) * 9 % 256) as u8])
    });
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    DynamicImage::ImageRgb8(img).save_with_format(path, format).unwrap();
}

/// A folder tree with PNG and JPEG files (mixed-case extensions) and files that are not images.
fn image_tree() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let specs = [
        ("b.png", ImageFormat::Png),
        ("a.JPG", ImageFormat::Jpeg),
        ("sub/c.jpeg", ImageFormat::Jpeg),
        ("sub/deeper/d.PNG", ImageFormat::Png),
        ("e.png", ImageFormat::Png),
    ];
    let mut paths: Vec<PathBuf> = specs
        .iter()
        .enumerate()
        .map(|(i, (name, fmt))| {
            let p = root.join(name);
            save(&p, i as u32 + 3, *fmt);
            p
        })
        .collect();
    std::fs::write(root.join("readme.txt"), "not an image").unwrap();
    std::fs::write(root.join("sub/labels.csv"), "a,b").unwrap();
    paths.sort();
    (dir, paths)
}

fn pre() -> Preprocessor {
    Preprocessor::default_for("clip", 16).unwrap()
}

#[test]
fn folders_expand_recursively_sorted_and_explicit_files_keep_their_place() {
    let (dir, sorted) = image_tree();
    let src = ImageSource::from_args(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(src.files(), sorted.as_slice());
    let extra = dir.path().join("sub/c.jpeg");
    let src = ImageSource::from_args(&[extra.clone(), dir.path().join("sub")]).unwrap();
    let mut want = vec![extra.clone(), extra, dir.path().join("sub/deeper/d.PNG")];
    want[1..].sort();
    assert_eq!(src.files(), want.as_slice());
}

#[test]
fn batches_follow_sorted_order_and_match_single_image_preprocessing() {
    let (dir, sorted) = image_tree();
    let src = ImageSource::from_args(&[dir.path().to_path_buf()]).unwrap();
    let pre = pre();
    let batches: Vec<_> = src.batches(&pre, 2).unwrap().quiet().collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|(f, _)| f.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
    let files: Vec<PathBuf> = batches.iter().flat_map(|(f, _)| f.clone()).collect();
    assert_eq!(files, sorted);
    for (files, tensor) in &batches {
        assert_eq!(tensor.shape(), &[files.len(), 3, 16, 16]);
        let data = tensor.to_vec().unwrap();
        for (i, f) in files.iter().enumerate() {
            let single = pre.load_and_preprocess(f).unwrap();
            assert_eq!(&data[i * 768..(i + 1) * 768], single.as_slice(), "{}", f.display());
        }
    }
}

#[test]
fn batch_of_one_equals_the_same_row_of_a_batch_of_n() {
    let (dir, _) = image_tree();
    let src = ImageSource::from_args(&[dir.path().to_path_buf()]).unwrap();
    let pre = pre();
    let whole: Vec<_> = src.batches(&pre, 64).unwrap().quiet().collect::<Result<_, _>>().unwrap();
    assert_eq!(whole.len(), 1);
    let all = whole[0].1.to_vec().unwrap();
    let ones: Vec<_> = src.batches(&pre, 1).unwrap().quiet().collect::<Result<_, _>>().unwrap();
    assert_eq!(ones.len(), src.len());
    for (i, (files, t)) in ones.iter().enumerate() {
        assert_eq!(files, &vec![src.files()[i].clone()]);
        assert_eq!(t.to_vec().unwrap().as_slice(), &all[i * 768..(i + 1) * 768]);
    }
}

#[test]
fn corrupt_file_error_names_it_and_ends_the_stream() {
    let (dir, _) = image_tree();
    let bad = dir.path().join("c_corrupt.png");
    let good = std::fs::read(dir.path().join("b.png")).unwrap();
    std::fs::write(&bad, &good[..good.len() / 3]).unwrap();
    let src = ImageSource::from_args(&[dir.path().to_path_buf()]).unwrap();
    let results: Vec<_> = src.batches(&pre(), 2).unwrap().quiet().collect();
    // sorted: a.JPG b.png | c_corrupt.png e.png | … — the second batch fails, nothing follows it
    assert!(results[0].is_ok());
    assert_eq!(results.len(), 2);
    let err = results[1].as_ref().unwrap_err();
    assert!(matches!(err, Error::Image { .. }), "{err:?}");
    assert!(err.to_string().contains("c_corrupt.png"), "{err}");
    let err = load_batch(std::slice::from_ref(&bad), &pre()).unwrap_err();
    assert!(err.to_string().contains(&bad.display().to_string()), "{err}");
}

#[test]
fn empty_folder_missing_path_and_no_args_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::write(dir.path().join("nested/notes.txt"), "x").unwrap();
    let err = ImageSource::from_args(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    let missing = dir.path().join("nope");
    let err = ImageSource::from_args(std::slice::from_ref(&missing)).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("nope"), "{err}");
    assert!(ImageSource::from_args(&[]).is_err());
    let one = ImageSource::from_files(vec![]);
    assert!(one.batches(&pre(), 0).is_err());
}

#[test]
fn mixed_aspect_without_crop_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (wide, tall) = (dir.path().join("1wide.png"), dir.path().join("2tall.png"));
    DynamicImage::ImageRgb8(ImageBuffer::from_pixel(40, 20, Rgb([1, 2, 3]))).save(&wide).unwrap();
    DynamicImage::ImageRgb8(ImageBuffer::from_pixel(20, 40, Rgb([1, 2, 3]))).save(&tall).unwrap();
    let mut pre = pre();
    pre.do_center_crop = false;
    let err = load_batch(&[wide.clone(), tall.clone()], &pre).unwrap_err();
    assert!(err.to_string().contains("2tall.png"), "{err}");
    let (_, t) = load_batch(&[wide], &pre).unwrap();
    assert_eq!(t.shape(), &[1, 3, 16, 32]);
}

#[test]
fn dropping_the_stream_early_does_not_hang() {
    let (dir, _) = image_tree();
    let src = ImageSource::from_args(&[dir.path().to_path_buf()]).unwrap();
    let mut it = src.batches(&pre(), 1).unwrap().quiet();
    assert!(it.next().unwrap().is_ok());
    drop(it);
}

#[test]
fn progress_counts_and_formats_json_lines() {
    use cpeal::progress::{json_line, Progress};
    let mut p = Progress::json(5, "images");
    p.inc(2);
    p.inc(3);
    assert_eq!((p.done(), p.total(), p.label()), (5, 5, "images"));
    p.finish();
    let line: serde_json::Value = serde_json::from_str(&json_line(4, 9)).unwrap();
    assert_eq!(line, serde_json::json!({"event": "progress", "done": 4, "total": 9}));
}
