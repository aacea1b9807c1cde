//! Image preprocessing: invariants of the transformers pipeline and errors on bad input.

use std::path::Path;

use cpeal::preprocess::{Filter, Preprocessor, ResizeTo, IMAGENET_MEAN, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use cpeal::Error;
use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

fn clip(size: usize) -> Preprocessor {
    Preprocessor::default_for("clip", size).unwrap()
}

/// (c/255 − mean)/std computed as transformers does (rescale in f64 then f32, normalise in f32).
fn expected_value(c: u8, mean: f64, std: f64) -> f32 {
    ((c as f64 / 255.0) as f32 - mean as f32) / std as f32
}

fn gradient(w: u32, h: u32) -> RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x + y) * 5 % 256) as u8]))
}

fn channel(out: &[f32], c: usize, hw: usize) -> &[f32] {
    &out[c * hw..(c + 1) * hw]
}

#[test]
fn output_is_chw_of_the_crop_size_for_any_aspect() {
    let pre = clip(32);
    for (w, h) in [(64, 48), (48, 64), (32, 32), (17, 90), (300, 31)] {
        let out = pre.preprocess_image(&DynamicImage::ImageRgb8(gradient(w, h)));
        assert_eq!(out.len(), 3 * 32 * 32, "{w}x{h}");
        assert_eq!(pre.output_size_for(w as usize, h as usize), (32, 32));
    }
    assert_eq!(pre.output_size(), Some((32, 32)));
}

#[test]
fn constant_colour_normalises_per_channel_exactly() {
    let colour = [200u8, 17, 94];
    for model in ["clip", "vit", "dinov2"] {
        let pre = Preprocessor::default_for(model, 24).unwrap();
        let img = RgbImage::from_pixel(50, 37, Rgb(colour));
        let out = pre.preprocess_image(&DynamicImage::ImageRgb8(img));
        let hw = 24 * 24;
        assert_eq!(out.len(), 3 * hw);
        for (c, &value) in colour.iter().enumerate() {
            let want = expected_value(value, pre.image_mean[c], pre.image_std[c]);
            assert!(channel(&out, c, hw).iter().all(|&v| v == want), "{model} channel {c}");
        }
    }
}

#[test]
fn architecture_defaults_follow_transformers() {
    let c = clip(224);
    assert_eq!((c.size, c.resample, c.crop_size), (ResizeTo::ShortestEdge(224), Filter::Bicubic, (224, 224)));
    assert_eq!((c.image_mean, c.image_std), (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD));
    let v = Preprocessor::default_for("vit", 224).unwrap();
    assert_eq!(v.size, ResizeTo::Exact { height: 224, width: 224 });
    assert_eq!((v.resample, v.do_center_crop, v.image_mean), (Filter::Bilinear, false, [0.5; 3]));
    let d = Preprocessor::default_for("dinov2", 224).unwrap();
    assert_eq!((d.size, d.crop_size, d.image_mean), (ResizeTo::ShortestEdge(256), (224, 224), IMAGENET_MEAN));
    let err = Preprocessor::default_for("resnet", 224).unwrap_err();
    assert!(err.to_string().contains("resnet"), "{err}");
}

#[test]
fn grayscale_equals_rgb_with_equal_channels() {
    let pre = clip(20);
    let gray: GrayImage = ImageBuffer::from_fn(33, 27, |x, y| Luma([((x * 11 + y * 3) % 256) as u8]));
    let rgb: RgbImage = ImageBuffer::from_fn(33, 27, |x, y| {
        let v = gray.get_pixel(x, y).0[0];
        Rgb([v, v, v])
    });
    let a = pre.preprocess_image(&DynamicImage::ImageLuma8(gray.clone()));
    let b = pre.preprocess_image(&DynamicImage::ImageRgb8(rgb));
    assert_eq!(a, b);
    let c = pre.from_gray_u8(gray.as_raw(), 33, 27).unwrap();
    assert_eq!(a, c);
}

#[test]
fn fashion_mnist_sized_gray_input_goes_through_resize() {
    let pre = Preprocessor::default_for("dinov2", 224).unwrap();
    let pixels: Vec<u8> = (0..28 * 28).map(|i| (i % 251) as u8).collect();
    let out = pre.from_gray_u8(&pixels, 28, 28).unwrap();
    assert_eq!(out.len(), 3 * 224 * 224);
    let hw = 224 * 224;
    // the three channels see the same gray value, so they differ only through mean/std
    for i in (0..hw).step_by(997) {
        let unnorm: Vec<f32> =
            (0..3).map(|c| out[c * hw + i] * pre.image_std[c] as f32 + pre.image_mean[c] as f32).collect();
        assert!((unnorm[0] - unnorm[1]).abs() < 1e-5 && (unnorm[1] - unnorm[2]).abs() < 1e-5, "{unnorm:?}");
    }
    assert!(pre.from_gray_u8(&pixels, 28, 27).is_err());
    assert!(pre.from_gray_u8(&[], 0, 0).is_err());
}

#[test]
fn center_crop_of_an_image_at_crop_size_is_identity() {
    let pre = clip(16);
    let img = gradient(16, 16);
    let out = pre.preprocess_image(&DynamicImage::ImageRgb8(img.clone()));
    let hw = 256;
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            assert_eq!(out[c * hw + i], expected_value(p.0[c], OPENAI_CLIP_MEAN[c], OPENAI_CLIP_STD[c]));
        }
    }
}

#[test]
fn center_crop_takes_the_middle_with_floor_offsets() {
    // no resize: a 7-wide, 5-high image cropped to 4x2 starts at top (5-2)//2 = 1, left (7-4)//2 = 1
    let mut pre = clip(4);
    pre.do_resize = false;
    pre.crop_size = (2, 4);
    pre.do_normalize = false;
    let img = gradient(7, 5);
    let out = pre.preprocess_image(&DynamicImage::ImageRgb8(img.clone()));
    assert_eq!(out.len(), 3 * 2 * 4);
    for y in 0..2u32 {
        for x in 0..4u32 {
            let want = (img.get_pixel(x + 1, y + 1).0[0] as f64 / 255.0) as f32;
            assert_eq!(out[(y * 4 + x) as usize], want);
        }
    }
    // a crop larger than the image pads with zeros around it
    pre.crop_size = (9, 9);
    let out = pre.preprocess_image(&DynamicImage::ImageRgb8(img.clone()));
    assert_eq!(out[0], 0.0);
    // (9-5)//2 = 2 rows and (9-7)//2 = 1 column of padding before the image
    assert_eq!(out[2 * 9 + 1], (img.get_pixel(0, 0).0[0] as f64 / 255.0) as f32);
}

#[test]
fn shortest_edge_resize_keeps_aspect_and_truncates_like_python() {
    let mut pre = clip(10);
    pre.do_center_crop = false;
    // int(10 * 33 / 20) = 16
    assert_eq!(pre.output_size_for(33, 20), (10, 16));
    assert_eq!(pre.output_size_for(20, 33), (16, 10));
    let out = pre.preprocess_image(&DynamicImage::ImageRgb8(gradient(33, 20)));
    assert_eq!(out.len(), 3 * 10 * 16);
    assert_eq!(pre.output_size(), None);
}

#[test]
fn transparent_pixels_are_composited_onto_white() {
    let mut pre = clip(8);
    pre.do_normalize = false;
    let img = RgbaImage::from_pixel(8, 8, Rgba([0, 0, 0, 0]));
    let out = pre.preprocess_image(&DynamicImage::ImageRgba8(img));
    assert!(out.iter().all(|&v| v == 1.0));
    let opaque = RgbaImage::from_pixel(8, 8, Rgba([10, 20, 30, 255]));
    let out = pre.preprocess_image(&DynamicImage::ImageRgba8(opaque));
    assert_eq!(out[0], (10.0f64 / 255.0) as f32);
    assert_eq!(out[64], (20.0f64 / 255.0) as f32);
}

#[test]
fn sixteen_bit_images_become_three_8bit_channels() {
    let pre = clip(8);
    let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(12, 8, Luma([65535]));
    let out = pre.preprocess_image(&DynamicImage::ImageLuma16(img));
    assert_eq!(out.len(), 3 * 64);
    for c in 0..3 {
        assert_eq!(out[c * 64], expected_value(255, OPENAI_CLIP_MEAN[c], OPENAI_CLIP_STD[c]));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn config_file_overrides_defaults_and_accepts_both_size_forms() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "preprocessor_config.json",
        r#"{"do_resize": true, "size": {"height": 40, "width": 30}, "resample": 2, "do_center_crop": false,
            "crop_size": 12, "rescale_factor": 0.00392156862745098, "image_mean": [0.1, 0.2, 0.3],
            "image_std": [0.4, 0.5, 0.6], "image_processor_type": "ViTImageProcessor"}"#,
    );
    let pre = Preprocessor::from_dir(dir.path(), "clip", 224).unwrap();
    assert_eq!(pre.size, ResizeTo::Exact { height: 40, width: 30 });
    assert_eq!((pre.resample, pre.do_center_crop, pre.crop_size), (Filter::Bilinear, false, (12, 12)));
    assert_eq!((pre.image_mean, pre.image_std), ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6]));
    assert_eq!(pre.output_size(), Some((40, 30)));
    write(
        dir.path(),
        "preprocessor_config.json",
        r#"{"size": {"shortest_edge": 64}, "crop_size": {"height": 48, "width": 56}}"#,
    );
    let pre = Preprocessor::from_dir(dir.path(), "clip", 224).unwrap();
    assert_eq!((pre.size, pre.crop_size), (ResizeTo::ShortestEdge(64), (48, 56)));
    // absent file: architecture defaults
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(Preprocessor::from_dir(empty.path(), "clip", 224).unwrap(), clip(224));
}

#[test]
fn invalid_config_field_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"size": "big"}"#, "size"),
        (r#"{"size": {"width": 3}}"#, "size"),
        (r#"{"crop_size": -4}"#, "crop_size"),
        (r#"{"resample": 7}"#, "resample"),
        (r#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
        (r#"{"image_std": [0.5, 0.0, 0.5]}"#, "image_std"),
        (r#"{"do_resize": "yes"}"#, "do_resize"),
        (r#"{"rescale_factor": "x"}"#, "rescale_factor"),
        (r#"{"size": 224,"#, "line"),
    ];
    for (text, field) in cases {
        let path = write(dir.path(), "preprocessor_config.json", text);
        let err = Preprocessor::from_dir(dir.path(), "clip", 224).unwrap_err();
        assert!(matches!(err, Error::Field { .. }), "{text}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains(field), "{text}: {msg}");
    }
}

#[test]
fn undecodable_or_missing_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pre = clip(8);
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(gradient(9, 9))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, &png[..png.len() / 2]).unwrap();
    let text = write(dir.path(), "notes.jpg", "this is not an image");
    let missing = dir.path().join("missing.png");
    for (path, image_error) in [(&corrupt, true), (&text, true), (&missing, false)] {
        let err = pre.load_and_preprocess(path).unwrap_err();
        assert_eq!(matches!(err, Error::Image { .. }), image_error, "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
    let good = dir.path().join("good.png");
    std::fs::write(&good, &png).unwrap();
    let out = pre.load_and_preprocess(&good).unwrap();
    assert_eq!(out, pre.preprocess_image(&DynamicImage::ImageRgb8(gradient(9, 9))));
}
