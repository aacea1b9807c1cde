//! The GPU side of every op: shape-checked by the op's public function, then launched here through the
//! launchers of `crate::gpu::ops` (the same code drives real CUDA and the `cuda-emu` emulator). Outputs take
//! the dtype of the op's main input (bf16 in a model forward). Nothing here copies to the host.

use crate::error::{Error, Result};
use crate::gpu::ops::{attention::Attention, elementwise, gemm, layernorm, patch_embed, pool, tokens};
use crate::gpu::{DType, GpuBuffer, GpuDevice};
use crate::tensor::{GpuStorage, Storage, Tensor};

use super::{Activation, Epilogue};

/// The device and buffer of a tensor that must be on a GPU.
fn parts(t: &Tensor, what: &str) -> Result<(GpuDevice, GpuBuffer)> {
    match t.storage() {
        Storage::Gpu(g) => Ok((g.device.clone(), g.buffer.clone())),
        Storage::Cpu(_) => Err(Error::invalid(what, "tensor is on the CPU while the op runs on a GPU")),
    }
}

fn buf(t: &Tensor, what: &str) -> Result<GpuBuffer> {
    parts(t, what).map(|(_, b)| b)
}

fn wrap(device: &GpuDevice, buffer: GpuBuffer, shape: &[usize]) -> Tensor {
    Tensor::from_storage(Storage::Gpu(GpuStorage { device: device.clone(), buffer }), shape.to_vec())
}

/// Small host integers (token ids, row indices) as an I32 device buffer. On CUDA the copy is queued from a
/// pinned ring (`gpu/pinned.rs`), so the forward does not wait for the device here.
fn upload_indices(dev: &GpuDevice, idx: impl Iterator<Item = usize>) -> Result<GpuBuffer> {
    let values: Vec<f32> = idx.map(|i| i as f32).collect();
    dev.upload(&values, DType::I32)
}

pub(super) fn linear(
    x: &Tensor,
    w: &Tensor,
    e: &Epilogue,
    (m, n, k): (usize, usize, usize),
    shape: &[usize],
) -> Result<Tensor> {
    let (dev, xb) = parts(x, "linear input")?;
    let wb = buf(w, "linear weight")?;
    let y = dev.alloc(xb.dtype(), m * n)?;
    let act = match e.activation {
        Activation::None | Activation::Tanh => gemm::Activation::None,
        Activation::Gelu => gemm::Activation::Gelu,
        Activation::QuickGelu => gemm::Activation::QuickGelu,
    };
    if e.activation == Activation::Tanh && (e.layer_scale.is_some() || e.residual.is_some()) {
        return Err(Error::invalid("linear", "tanh cannot be combined with layer scale or residual on a GPU"));
    }
    let (bias, scale, residual) =
        (opt(e.bias, "bias")?, opt(e.layer_scale, "layer_scale")?, opt(e.residual, "residual")?);
    let mut g = gemm::Gemm::new(m, n, k, &xb, &wb, &y).act(act);
    if let Some(b) = &bias {
        g = g.bias(b);
    }
    if let Some(s) = &scale {
        g = g.layer_scale(s);
    }
    if let Some(r) = &residual {
        g = g.residual(r, n);
    }
    g.launch(&dev)?;
    if e.activation == Activation::Tanh {
        let z = dev.alloc(y.dtype(), m * n)?;
        elementwise::tanh(&dev, &y, &z)?;
        return Ok(wrap(&dev, z, shape));
    }
    Ok(wrap(&dev, y, shape))
}

fn opt(t: Option<&Tensor>, what: &str) -> Result<Option<GpuBuffer>> {
    t.map(|t| buf(t, what)).transpose()
}

pub(super) fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let (dev, xb) = parts(x, "layer_norm input")?;
    let y = dev.alloc(xb.dtype(), x.numel())?;
    let (g, b) = (buf(gamma, "layer_norm gamma")?, buf(beta, "layer_norm beta")?);
    layernorm::layernorm(&dev, x.rows(), x.last_dim(), &xb, &g, &b, &y, eps as f32)?;
    Ok(wrap(&dev, y, x.shape()))
}

/// `qkv` `[B, T, 3·D]`: Q, K and V are strided views of the one buffer.
pub(super) fn attention(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    let (dev, all) = parts(qkv, "attention qkv")?;
    let [b, t, d3] = qkv.dims::<3>("attention")?;
    let d = d3 / 3;
    let view = all.len() - 2 * d;
    let (q, k, v) = (all.slice(0, view)?, all.slice(d, view)?, all.slice(2 * d, view)?);
    let o = dev.alloc(all.dtype(), b * t * d)?;
    let mut a = Attention::new(b, heads, t, d / heads, &q, &k, &v, &o).causal(causal);
    (a.ld_q, a.ld_k, a.ld_v) = (d3, d3, d3);
    a.launch(&dev)?;
    Ok(wrap(&dev, o, &[b, t, d]))
}

/// Columns of a stride-`p` convolution: f32 pixels `[B, C, H, W]` → `[B·nP, C·p·p]` in `dtype`.
pub(super) fn im2col(pixels: &Tensor, [b, c, h, w]: [usize; 4], p: usize, dtype: DType) -> Result<Tensor> {
    let (dev, img) = parts(pixels, "pixel_values")?;
    if img.dtype() != DType::F32 {
        return Err(Error::invalid("patch_embed", "pixel_values must be f32 on the device"));
    }
    let rows = b * (h / p) * (w / p);
    let cols = dev.alloc(dtype, rows * c * p * p)?;
    patch_embed::patch_im2col(&dev, b, c, h, w, p, &img, &cols)?;
    Ok(wrap(&dev, cols, &[b, (h / p) * (w / p), c * p * p]))
}

pub(super) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (dev, x) = parts(a, "add lhs")?;
    let y = dev.alloc(x.dtype(), a.numel())?;
    elementwise::add(&dev, &x, &buf(b, "add rhs")?, &y)?;
    Ok(wrap(&dev, y, a.shape()))
}

pub(super) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let (dev, xb) = parts(x, "l2_normalize input")?;
    let y = dev.alloc(xb.dtype(), x.numel())?;
    tokens::l2_normalize(&dev, x.rows(), x.last_dim(), &xb, &y)?;
    Ok(wrap(&dev, y, x.shape()))
}

pub(super) fn assemble_tokens(
    patches: &Tensor,
    cls: &Tensor,
    pos: &Tensor,
    registers: Option<&Tensor>,
    [b, n, r, d]: [usize; 4],
) -> Result<Tensor> {
    let (dev, p) = parts(patches, "patch tokens")?;
    let y = dev.alloc(p.dtype(), b * (1 + r + n) * d)?;
    let reg = registers.map(|t| buf(t, "register tokens")).transpose()?;
    let (cls, pos) = (buf(cls, "class token")?, buf(pos, "position embeddings")?);
    tokens::assemble_tokens(&dev, b, n, d, &p, &cls, &pos, reg.as_ref().map(|g| (r, g)), &y)?;
    Ok(wrap(&dev, y, &[b, 1 + r + n, d]))
}

pub(super) fn embedding(ids: &[Vec<u32>], table: &Tensor, pos: &Tensor, [vocab, d]: [usize; 2]) -> Result<Tensor> {
    let (dev, tab) = parts(table, "token embedding")?;
    let t = ids.first().map_or(0, Vec::len);
    let rows = ids.len() * t;
    let idx = upload_indices(&dev, ids.iter().flatten().map(|&i| i as usize))?;
    let y = dev.alloc(tab.dtype(), rows * d)?;
    tokens::embedding(&dev, rows, t, d, &idx, &tab, vocab, &buf(pos, "position embedding")?, &y)?;
    Ok(wrap(&dev, y, &[ids.len(), t, d]))
}

pub(super) fn select_rows(x: &Tensor, index: &[usize], [b, t, d]: [usize; 3]) -> Result<Tensor> {
    let (dev, xb) = parts(x, "select_rows input")?;
    let idx = upload_indices(&dev, index.iter().copied())?;
    let y = dev.alloc(xb.dtype(), b * d)?;
    pool::gather_rows(&dev, b, t, d, &xb, &idx, &y)?;
    Ok(wrap(&dev, y, &[b, d]))
}

pub(super) fn mean_tokens(x: &Tensor, from: usize, [b, t, d]: [usize; 3]) -> Result<Tensor> {
    let (dev, xb) = parts(x, "mean_tokens input")?;
    let y = dev.alloc(xb.dtype(), b * d)?;
    pool::mean_tokens(&dev, b, t, d, (from, t), &xb, &y)?;
    Ok(wrap(&dev, y, &[b, d]))
}

pub(super) fn concat_last(a: &Tensor, b: &Tensor, [n, d1, d2]: [usize; 3]) -> Result<Tensor> {
    let (dev, x) = parts(a, "concat lhs")?;
    let y = dev.alloc(x.dtype(), n * (d1 + d2))?;
    tokens::copy_cols(&dev, n, d1, &x, d1 + d2, 0, &y)?;
    tokens::copy_cols(&dev, n, d2, &buf(b, "concat rhs")?, d1 + d2, d1, &y)?;
    Ok(wrap(&dev, y, &[n, d1 + d2]))
}
