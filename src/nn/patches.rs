//! Image → token sequence: patch projection, class token, position embeddings (bicubically resampled,
//! as transformers does, when the input's patch grid differs from the checkpoint's; cached per grid size).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

pub struct PatchEmbeddings {
    /// The conv weight as the patch GEMM's `[D, C·P·P]`, padded on a GPU (`ops::patch_gemm_weight`).
    gemm_weight: Tensor,
    pub bias: Option<Tensor>,
    pub patch: usize,
    pub class_token: Tensor,
    /// `[1 + g·g, D]` for the checkpoint's square grid `g × g`
    pub positions: Tensor,
    /// `[R, D]` tokens placed after the class token, without positions (DINOv2 with registers)
    pub registers: Option<Tensor>,
    /// Resample positions with antialiasing (DINOv2 with registers) instead of plain bicubic
    pub antialias: bool,
    resampled: Mutex<HashMap<(usize, usize), Tensor>>,
}

impl PatchEmbeddings {
    pub fn new(weight: Tensor, bias: Option<Tensor>, class_token: Tensor, positions: Tensor) -> Result<Self> {
        let patch = weight.shape().get(2).copied().unwrap_or(0);
        let gemm_weight = ops::patch_gemm_weight(&weight)?;
        let d = positions.last_dim();
        let positions = positions.reshape(&[positions.numel() / d, d])?;
        let class_token = class_token.reshape(&[d])?;
        Ok(PatchEmbeddings {
            gemm_weight,
            bias,
            patch,
            class_token,
            positions,
            registers: None,
            antialias: false,
            resampled: Mutex::new(HashMap::new()),
        })
    }

    /// Register tokens `[1, R, D]` after the class token, and antialiased position resampling, as
    /// transformers' `Dinov2WithRegistersModel`.
    pub fn with_registers(mut self, registers: Tensor) -> Result<Self> {
        let d = self.positions.shape()[1];
        self.registers = Some(registers.reshape(&[registers.numel() / d.max(1), d])?);
        self.antialias = true;
        Ok(self)
    }

    /// Side of the checkpoint's square patch grid.
    pub fn grid(&self) -> usize {
        ((self.positions.shape()[0] - 1) as f64).sqrt().round() as usize
    }

    /// pixels `[B, C, H, W]` → `[B, 1 + R + (H/P)(W/P), D]` (R register tokens, usually none).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let [_, _, h, w] = pixels.dims::<4>("patch_embeddings")?;
        if h < self.patch || w < self.patch {
            return Err(Error::shape(
                "patch_embeddings",
                format!("image {h}x{w} is smaller than one {0}x{0} patch", self.patch),
            ));
        }
        let patches = ops::patch_embed(pixels, &self.gemm_weight, self.patch, self.bias.as_ref())?;
        let positions = self.positions_for(h / self.patch, w / self.patch)?;
        ops::assemble_tokens(&patches, &self.class_token, &positions, self.registers.as_ref())
    }

    fn positions_for(&self, gh: usize, gw: usize) -> Result<Tensor> {
        let g = self.grid();
        if gh == g && gw == g {
            return Ok(self.positions.clone());
        }
        let mut cache = self.resampled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&(gh, gw)) {
            return Ok(t.clone());
        }
        let d = self.positions.shape()[1];
        let all = self.positions.to_vec()?;
        let grid = Tensor::from_vec(all[d..].to_vec(), &[g, g, d])?;
        let resampled = if self.antialias {
            ops::interpolate_bicubic_antialiased(&grid, gh, gw)?
        } else {
            ops::interpolate_bicubic(&grid, gh, gw)?
        };
        let resampled = resampled.to_vec()?;
        let mut joined = all[..d].to_vec();
        joined.extend_from_slice(&resampled);
        let device = self.positions.device();
        let t = Tensor::from_vec(joined, &[1 + gh * gw, d])?.to_device_as(&device, device.storage_dtype())?;
        cache.insert((gh, gw), t.clone());
        Ok(t)
    }
}
