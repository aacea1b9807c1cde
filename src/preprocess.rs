//! Image → normalised CHW f32, as the transformers image processors (PIL backend) do it: convert to RGB
//! (transparency composited onto white), resize (Pillow-exact bicubic/bilinear on u8), center crop (zero pad
//! when the crop is larger), rescale by 1/255 and normalise per channel.
//!
//! Settings come from a checkpoint's `preprocessor_config.json`, or per architecture when it is absent
//! ([`Preprocessor::default_for`]); fields missing from the file keep the architecture's defaults.

mod resample;

use std::path::Path;

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};
use serde_json::Value;

pub use resample::Filter;

use crate::error::{Error, Result};
use crate::weights::JsonConfig;

pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The `size` field: `{"shortest_edge": N}` keeps the aspect ratio, `{"height","width"}` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTo {
    ShortestEdge(usize),
    Exact { height: usize, width: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessor {
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: ResizeTo,
    pub resample: Filter,
    pub do_center_crop: bool,
    /// (height, width)
    pub crop_size: (usize, usize),
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Preprocessor {
    /// Images `rows` of an MNIST-layout file, preprocessed in parallel: `[rows, 3, H, W]` on the CPU.
    pub fn idx_batch(&self, images: &crate::data::idx::IdxImages, rows: &[usize]) -> Result<crate::tensor::Tensor> {
        use rayon::prelude::*;
        let pixels: Vec<Vec<f32>> = rows
            .par_iter()
            .map(|&r| self.from_gray_u8(images.image(r).unwrap_or_default(), images.cols, images.rows))
            .collect::<Result<_>>()?;
        let per = pixels.first().map_or(0, Vec::len);
        let side = ((per / 3) as f64).sqrt() as usize;
        crate::tensor::Tensor::from_vec(pixels.concat(), &[rows.len(), 3, side, per / 3 / side.max(1)])
    }

    /// The preprocessing a checkpoint expects: its `preprocessor_config.json`, else the architecture's defaults.
    pub fn for_model(model: &crate::models::Model, model_dir: &Path) -> Result<Preprocessor> {
        let model_type = model.vision_model_type();
        // DINOv2 configs say 518 (the pretraining size) but its processor crops 224.
        let size = match model_type {
            "dinov2" => 224,
            _ => model.image_size().unwrap_or(224),
        };
        Preprocessor::from_dir(model_dir, model_type, size)
    }

    /// Settings of the transformers processor that ships with each architecture, for `image_size` inputs.
    pub fn default_for(model_type: &str, image_size: usize) -> Result<Preprocessor> {
        if image_size == 0 {
            crate::bail!("preprocessor", "image size must be positive");
        }
        let base = Preprocessor {
            do_convert_rgb: true,
            do_resize: true,
            size: ResizeTo::ShortestEdge(image_size),
            resample: Filter::Bicubic,
            do_center_crop: true,
            crop_size: (image_size, image_size),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
        };
        match model_type {
            "clip" | "clip_vision_model" => Ok(base),
            "vit" => Ok(Preprocessor {
                size: ResizeTo::Exact { height: image_size, width: image_size },
                resample: Filter::Bilinear,
                do_center_crop: false,
                image_mean: [0.5; 3],
                image_std: [0.5; 3],
                ..base
            }),
            "dinov2" | "dinov2_with_registers" => Ok(Preprocessor {
                size: ResizeTo::ShortestEdge(256 * image_size / 224),
                image_mean: IMAGENET_MEAN,
                image_std: IMAGENET_STD,
                ..base
            }),
            other => crate::bail!("preprocessor", "no default preprocessing for model type `{other}`"),
        }
    }

    /// `dir/preprocessor_config.json` when present, else [`Preprocessor::default_for`].
    pub fn from_dir(dir: impl AsRef<Path>, model_type: &str, image_size: usize) -> Result<Preprocessor> {
        let path = dir.as_ref().join("preprocessor_config.json");
        let defaults = Preprocessor::default_for(model_type, image_size)?;
        if path.exists() {
            Preprocessor::from_file(&path, defaults)
        } else {
            Ok(defaults)
        }
    }

    /// Reads a `preprocessor_config.json`; fields it lacks keep the values of `defaults`.
    pub fn from_file(path: impl AsRef<Path>, defaults: Preprocessor) -> Result<Preprocessor> {
        let cfg = JsonConfig::read(path.as_ref())?;
        Preprocessor::from_config(&cfg, defaults)
    }

    pub fn from_config(cfg: &JsonConfig, d: Preprocessor) -> Result<Preprocessor> {
        let p = Preprocessor {
            do_convert_rgb: cfg.bool_or("do_convert_rgb", d.do_convert_rgb)?,
            do_resize: cfg.bool_or("do_resize", d.do_resize)?,
            size: read_size(cfg, d.size)?,
            resample: read_resample(cfg, d.resample)?,
            do_center_crop: cfg.bool_or("do_center_crop", d.do_center_crop)?,
            crop_size: read_crop(cfg, d.crop_size)?,
            do_rescale: cfg.bool_or("do_rescale", d.do_rescale)?,
            rescale_factor: cfg.f64_or("rescale_factor", d.rescale_factor)?,
            do_normalize: cfg.bool_or("do_normalize", d.do_normalize)?,
            image_mean: read_triple(cfg, "image_mean", d.image_mean)?,
            image_std: read_triple(cfg, "image_std", d.image_std)?,
        };
        if let Some(i) = p.image_std.iter().position(|&s| s == 0.0 || !s.is_finite()) {
            return Err(Error::field(cfg.path(), format!("image_std[{i}]"), "must be a finite non-zero number"));
        }
        Ok(p)
    }

    /// (height, width) of every output, when it does not depend on the input's aspect ratio.
    pub fn output_size(&self) -> Option<(usize, usize)> {
        match (self.do_center_crop, self.do_resize, self.size) {
            (true, _, _) => Some(self.crop_size),
            (false, true, ResizeTo::Exact { height, width }) => Some((height, width)),
            _ => None,
        }
    }

    /// (height, width) of the output for a `w×h` input.
    pub fn output_size_for(&self, w: usize, h: usize) -> (usize, usize) {
        let (rw, rh) = if self.do_resize { self.resized_size(w, h) } else { (w, h) };
        if self.do_center_crop {
            self.crop_size
        } else {
            (rh, rw)
        }
    }

    /// Decoded image → CHW f32 (3 channels).
    pub fn preprocess_image(&self, image: &DynamicImage) -> Vec<f32> {
        let rgb = if self.do_convert_rgb { to_rgb_like_pil(image) } else { image.to_rgb8() };
        let (mut w, mut h) = (rgb.width() as usize, rgb.height() as usize);
        let mut pixels = rgb.into_raw();
        if self.do_resize {
            let (nw, nh) = self.resized_size(w, h);
            if (nw, nh) != (w, h) {
                pixels = resample::resize_u8(&pixels, (w, h), 3, (nw, nh), self.resample);
                (w, h) = (nw, nh);
            }
        }
        let (oh, ow) = if self.do_center_crop { self.crop_size } else { (h, w) };
        let mut out = vec![0f32; 3 * oh * ow];
        let top = floor_half(h as i64 - oh as i64);
        let left = floor_half(w as i64 - ow as i64);
        // each u8 level maps to one value per channel: look it up instead of recomputing
        let luts = self.channel_transforms().map(|t| std::array::from_fn::<f32, 256, _>(|v| t.apply(v as u8)));
        for y in 0..oh {
            let sy = top + y as i64;
            for x in 0..ow {
                let sx = left + x as i64;
                let inside = sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w;
                for (c, lut) in luts.iter().enumerate() {
                    let v = if inside { pixels[(sy as usize * w + sx as usize) * 3 + c] } else { 0 };
                    out[(c * oh + y) * ow + x] = lut[v as usize];
                }
            }
        }
        out
    }

    /// Reads and decodes `path` (JPEG/PNG, by content), then [`Preprocessor::preprocess_image`].
    pub fn load_and_preprocess(&self, path: impl AsRef<Path>) -> Result<Vec<f32>> {
        Ok(self.preprocess_image(&decode_image(path.as_ref())?))
    }

    /// Row-major 8-bit grayscale pixels (e.g. 28×28 Fashion-MNIST) through the same pipeline.
    pub fn from_gray_u8(&self, pixels: &[u8], width: usize, height: usize) -> Result<Vec<f32>> {
        let n = width.checked_mul(height).filter(|&n| n > 0 && n == pixels.len());
        let image =
            n.and_then(|_| GrayImage::from_raw(width as u32, height as u32, pixels.to_vec())).ok_or_else(|| {
                Error::invalid(
                    "grayscale image",
                    format!("{} pixels do not make a {width}x{height} image", pixels.len()),
                )
            })?;
        Ok(self.preprocess_image(&DynamicImage::ImageLuma8(image)))
    }

    /// Size after the resize step (transformers' `get_resize_output_image_size`, `default_to_square=False`).
    fn resized_size(&self, w: usize, h: usize) -> (usize, usize) {
        match self.size {
            ResizeTo::Exact { height, width } => (width, height),
            ResizeTo::ShortestEdge(s) => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                // Python: int(size * long / short), a float division truncated
                let new_long = (s as f64 * long as f64 / short as f64) as usize;
                if w <= h {
                    (s, new_long)
                } else {
                    (new_long, s)
                }
            }
        }
    }

    fn channel_transforms(&self) -> [ChannelTransform; 3] {
        std::array::from_fn(|c| ChannelTransform {
            rescale: self.do_rescale.then_some(self.rescale_factor),
            norm: self.do_normalize.then(|| (self.image_mean[c] as f32, self.image_std[c] as f32)),
        })
    }
}

/// transformers: `rescale` multiplies in float64 and casts to float32; `normalize` works in float32.
#[derive(Clone, Copy)]
struct ChannelTransform {
    rescale: Option<f64>,
    norm: Option<(f32, f32)>,
}

impl ChannelTransform {
    fn apply(&self, v: u8) -> f32 {
        let x = match self.rescale {
            Some(f) => (v as f64 * f) as f32,
            None => v as f32,
        };
        match self.norm {
            Some((m, s)) => (x - m) / s,
            None => x,
        }
    }
}

/// Python's `n // 2`.
fn floor_half(n: i64) -> i64 {
    n.div_euclid(2)
}

/// Decodes an image file by content; errors name the file.
pub fn decode_image(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let reader = reader.with_guessed_format().map_err(|e| Error::Image { path: path.into(), reason: e.to_string() })?;
    if reader.format().is_none() {
        return Err(Error::Image { path: path.into(), reason: "unrecognised image format".into() });
    }
    reader.decode().map_err(|e| Error::Image { path: path.into(), reason: e.to_string() })
}

/// transformers' `convert_to_rgb`: images with alpha are composited onto opaque white (Pillow's integer
/// `alpha_composite`), others converted channel-wise (gray is replicated).
pub fn to_rgb_like_pil(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba: RgbaImage = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for p in rgba.pixels() {
        let [r, g, b, a] = p.0;
        out.extend([r, g, b].map(|v| composite_on_white(v, a)));
    }
    RgbImage::from_raw(w, h, out).expect("buffer sized from dimensions")
}

/// Pillow `ImagingAlphaComposite` with an opaque white destination.
fn composite_on_white(src: u8, alpha: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    let outa255 = 255u32 * 255;
    let coef1 = alpha as u32 * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = src as u32 * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS) as u8
}

fn read_size(cfg: &JsonConfig, default: ResizeTo) -> Result<ResizeTo> {
    let Some(v) = cfg.raw("size") else {
        return Ok(default);
    };
    let err = |reason: &str| Error::field(cfg.path(), "size", reason.to_string());
    match v {
        Value::Number(_) => positive(v).map(ResizeTo::ShortestEdge).ok_or_else(|| err("expected a positive integer")),
        Value::Object(m) => {
            let get = |k: &str| m.get(k).filter(|x| !x.is_null());
            if let Some(s) = get("shortest_edge") {
                let s = positive(s).ok_or_else(|| err("`shortest_edge` must be a positive integer"))?;
                return Ok(ResizeTo::ShortestEdge(s));
            }
            match (get("height").and_then(positive), get("width").and_then(positive)) {
                (Some(height), Some(width)) => Ok(ResizeTo::Exact { height, width }),
                _ => {
                    Err(err("expected {\"shortest_edge\": N} or {\"height\": H, \"width\": W} with positive integers"))
                }
            }
        }
        _ => Err(err("expected an integer or an object")),
    }
}

fn read_crop(cfg: &JsonConfig, default: (usize, usize)) -> Result<(usize, usize)> {
    let Some(v) = cfg.raw("crop_size") else {
        return Ok(default);
    };
    let err = || Error::field(cfg.path(), "crop_size", "expected a positive integer or {\"height\": H, \"width\": W}");
    match v {
        Value::Number(_) => positive(v).map(|s| (s, s)).ok_or_else(err),
        Value::Object(m) => match (m.get("height").and_then(positive), m.get("width").and_then(positive)) {
            (Some(h), Some(w)) => Ok((h, w)),
            _ => Err(err()),
        },
        _ => Err(err()),
    }
}

fn read_resample(cfg: &JsonConfig, default: Filter) -> Result<Filter> {
    if !cfg.has("resample") {
        return Ok(default);
    }
    match cfg.usize("resample")? {
        2 => Ok(Filter::Bilinear),
        3 => Ok(Filter::Bicubic),
        other => Err(Error::field(
            cfg.path(),
            "resample",
            format!("unsupported PIL filter {other} (supported: 2 = bilinear, 3 = bicubic)"),
        )),
    }
}

fn read_triple(cfg: &JsonConfig, key: &str, default: [f64; 3]) -> Result<[f64; 3]> {
    let Some(v) = cfg.raw(key) else {
        return Ok(default);
    };
    if let Some(x) = v.as_f64() {
        return Ok([x; 3]);
    }
    let list: Option<Vec<f64>> = v.as_array().and_then(|a| a.iter().map(Value::as_f64).collect());
    match list.as_deref() {
        Some(&[a, b, c]) => Ok([a, b, c]),
        _ => Err(Error::field(cfg.path(), key, format!("expected a number or a list of 3 numbers, got {v}"))),
    }
}

fn positive<V: std::borrow::Borrow<Value>>(v: V) -> Option<usize> {
    let v = v.borrow();
    v.as_u64().filter(|&x| x > 0).map(|x| x as usize)
}
