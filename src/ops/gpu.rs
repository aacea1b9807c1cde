//! The GPU side of every op: shape-checked by the op's public function, then launched here through the
//! launchers of `crate::gpu::ops` (the same code drives real CUDA and the `cuda-emu` emulator). Outputs take
//! the dtype of the op's main input (bf16 in a model forward), except around an f32 residual stream: a
//! LayerNorm writes its parameters' dtype and a linear with a residual returns the residual's. Nothing here
//! copies to the host.

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
    dims: (usize, usize, usize),
    shape: &[usize],
) -> Result<Tensor> {
    linear_stats(x, w, e, dims, shape, None).map(|(y, _)| y)
}

/// `linear`, also returning each output row's LayerNorm statistics (f32 `[rows, 2]`): the GEMM's epilogue writes
/// them per window of columns as it stores the output (`Gemm::row_partials`), and a small kernel merges them.
pub(super) fn linear_with_row_stats(
    x: &Tensor,
    w: &Tensor,
    e: &Epilogue,
    dims: (usize, usize, usize),
    shape: &[usize],
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    match linear_stats(x, w, e, dims, shape, Some(eps))? {
        (y, Some(stats)) => Ok((y, stats)),
        (y, None) => {
            let stats = layer_norm_stats(&y, eps)?;
            Ok((y, stats))
        }
    }
}

/// The GEMM of `linear`; with `stats_eps`, the statistics of its output rows too where the epilogue can write
/// them (not through a tanh pass or onto an f32 stream: None there).
fn linear_stats(
    x: &Tensor,
    w: &Tensor,
    e: &Epilogue,
    (m, n, k): (usize, usize, usize),
    shape: &[usize],
    stats_eps: Option<f64>,
) -> Result<(Tensor, Option<Tensor>)> {
    let (dev, xb) = parts(x, "linear input")?;
    if let Some(stream) = opt(e.residual, "residual")?.filter(|r| r.dtype() != xb.dtype()) {
        return Ok((linear_onto_stream(x, w, e, (m, n, k), shape, &stream)?, None));
    }
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
    let row_norm = match e.row_norm {
        Some(r) => Some((f32_buf(r.stats, "row_norm stats")?, f32_buf(r.col_sum, "row_norm col_sum")?)),
        None => None,
    };
    let mut g = gemm::Gemm::new(m, n, k, &xb, &wb, &y).act(act);
    if let Some((stats, col_sum)) = &row_norm {
        g = g.row_norm(stats, col_sum);
    }
    if let Some(b) = &bias {
        g = g.bias(b);
    }
    if let Some(s) = &scale {
        g = g.layer_scale(s);
    }
    if let Some(r) = &residual {
        g = g.residual(r, n);
    }
    if e.activation == Activation::Tanh {
        g.launch(&dev)?;
        let z = dev.alloc(y.dtype(), m * n)?;
        elementwise::tanh(&dev, &y, &z)?;
        return Ok((wrap(&dev, z, shape), None));
    }
    let Some(eps) = stats_eps else {
        g.launch(&dev)?;
        return Ok((wrap(&dev, y, shape), None));
    };
    let width = g.partial_width(&dev)?;
    let partials = dev.alloc(DType::F32, 2 * m * n.div_ceil(width))?;
    g.row_partials(&partials).launch(&dev)?;
    let stats = dev.alloc(DType::F32, 2 * m)?;
    layernorm::merge_partials(&dev, m, n, width, &partials, &stats, eps as f32)?;
    Ok((wrap(&dev, y, shape), Some(wrap(&dev, stats, &[m, 2]))))
}

/// `linear` whose residual is an f32 stream while x is 16-bit: the GEMM's epilogue works in x's dtype, so it
/// writes the branch there and the residual add happens in f32 after it (the result is f32).
fn linear_onto_stream(
    x: &Tensor,
    w: &Tensor,
    e: &Epilogue,
    dims: (usize, usize, usize),
    shape: &[usize],
    stream: &GpuBuffer,
) -> Result<Tensor> {
    let branch = linear(x, w, &Epilogue { residual: None, ..*e }, dims, shape)?;
    let (dev, b) = parts(&branch, "linear branch")?;
    let out = dev.alloc(stream.dtype(), b.len())?;
    elementwise::add(&dev, stream, &b, &out)?;
    Ok(wrap(&dev, out, shape))
}

fn opt(t: Option<&Tensor>, what: &str) -> Result<Option<GpuBuffer>> {
    t.map(|t| buf(t, what)).transpose()
}

fn f32_buf(t: &Tensor, what: &str) -> Result<GpuBuffer> {
    let b = buf(t, what)?;
    if b.dtype() != DType::F32 {
        return Err(Error::invalid(what, format!("{:?} on the device; the GEMM reads it as f32", b.dtype())));
    }
    Ok(b)
}

pub(super) fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let (dev, xb) = parts(x, "layer_norm input")?;
    let (g, b) = (buf(gamma, "layer_norm gamma")?, buf(beta, "layer_norm beta")?);
    let y = dev.alloc(g.dtype(), x.numel())?;
    layernorm::layernorm(&dev, x.rows(), x.last_dim(), &xb, &g, &b, &y, eps as f32)?;
    Ok(wrap(&dev, y, x.shape()))
}

pub(super) fn layer_norm_stats(x: &Tensor, eps: f64) -> Result<Tensor> {
    let (dev, xb) = parts(x, "layer_norm_stats input")?;
    let stats = dev.alloc(DType::F32, 2 * x.rows())?;
    layernorm::row_stats(&dev, x.rows(), x.last_dim(), &xb, &stats, eps as f32)?;
    Ok(wrap(&dev, stats, &[x.rows(), 2]))
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

/// Columns of a stride-`p` convolution: f32 pixels `[B, C, H, W]` → `[B·nP, width]` in `dtype`, columns past
/// C·p·p zero.
pub(super) fn im2col(
    pixels: &Tensor,
    [b, c, h, w]: [usize; 4],
    p: usize,
    width: usize,
    dtype: DType,
) -> Result<Tensor> {
    let (dev, img) = parts(pixels, "pixel_values")?;
    if img.dtype() != DType::F32 {
        return Err(Error::invalid("patch_embed", "pixel_values must be f32 on the device"));
    }
    let rows = b * (h / p) * (w / p);
    let cols = dev.alloc(dtype, rows * width)?;
    patch_embed::patch_im2col(&dev, b, c, h, w, p, width, &img, &cols)?;
    Ok(wrap(&dev, cols, &[b, (h / p) * (w / p), width]))
}

pub(super) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (dev, x) = parts(a, "add lhs")?;
    let y = dev.alloc(x.dtype(), a.numel())?;
    elementwise::add(&dev, &x, &buf(b, "add rhs")?, &y)?;
    Ok(wrap(&dev, y, a.shape()))
}

pub(super) fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    let (dev, xb) = parts(x, "scale input")?;
    let y = dev.alloc(xb.dtype(), x.numel())?;
    elementwise::scale(&dev, &xb, &y, s)?;
    Ok(wrap(&dev, y, x.shape()))
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

pub(super) fn embedding(
    ids: &[Vec<u32>],
    table: &Tensor,
    pos: &Tensor,
    [vocab, d]: [usize; 2],
    dtype: DType,
) -> Result<Tensor> {
    let (dev, tab) = parts(table, "token embedding")?;
    let t = ids.first().map_or(0, Vec::len);
    let rows = ids.len() * t;
    let idx = upload_indices(&dev, ids.iter().flatten().map(|&i| i as usize))?;
    let y = dev.alloc(dtype, rows * d)?;
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

#[cfg(all(test, feature = "cuda-emu"))]
mod tests {
    use crate::gpu::DType;
    use crate::ops::test_util::rand_vec;
    use crate::ops::{self, Epilogue};
    use crate::{Device, DeviceKind, StorageDtype, Tensor};

    /// `v` rounded to `dt`, on the CPU (`dev` = None) or stored as `dt` on `dev`.
    fn tensor(dev: Option<&Device>, v: &[f32], shape: &[usize], dt: DType) -> Tensor {
        let t = Tensor::from_vec(dt.round(v), shape).unwrap();
        dev.map_or(t.clone(), |d| t.to_device_as(d, dt).unwrap())
    }

    fn dtype(t: &Tensor) -> DType {
        t.gpu().expect("on the device").buffer.dtype()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        a.to_vec().unwrap().iter().zip(b.to_vec().unwrap()).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
    }

    /// A stream near 100 and a branch near 1: rounding the stream to bf16 anywhere would cost up to 0.25.
    #[test]
    fn an_f32_residual_stream_stays_f32_through_layer_norm_and_linear() {
        let emu = Device::open_with(DeviceKind::CudaEmu, StorageDtype::Bf16).unwrap();
        let (m, k, n) = (13, 24, 40);
        let stream: Vec<f32> = rand_vec(m * n, 1, 1.0).iter().map(|v| v + 100.0).collect();
        let (x, w, b) = (rand_vec(m * k, 2, 1.0), rand_vec(n * k, 3, 0.2), rand_vec(n, 4, 0.5));
        let (g, beta) = (rand_vec(n, 5, 1.0), rand_vec(n, 6, 0.5));
        let mut out = Vec::new();
        for dev in [Some(&emu), None] {
            let s = tensor(dev, &stream, &[m, n], DType::F32);
            let (gt, bt) = (tensor(dev, &g, &[n], DType::Bf16), tensor(dev, &beta, &[n], DType::Bf16));
            let normed = ops::layer_norm(&s, &gt, &bt, 1e-5).unwrap();
            let (xt, wt) = (tensor(dev, &x, &[m, k], DType::Bf16), tensor(dev, &w, &[n, k], DType::Bf16));
            let bias = tensor(dev, &b, &[n], DType::Bf16);
            let y = ops::linear(&xt, &wt, Epilogue::bias(Some(&bias)).with_residual(&s)).unwrap();
            out.push((normed, y));
        }
        let [(normed, y), (want_normed, want_y)] = <[_; 2]>::try_from(out).ok().unwrap();
        assert_eq!(dtype(&normed), DType::Bf16, "LayerNorm writes its parameters' dtype");
        assert_eq!(dtype(&y), DType::F32, "a linear onto an f32 stream returns f32");
        assert!(max_diff(&normed, &want_normed) < 2e-2, "layer_norm: {}", max_diff(&normed, &want_normed));
        assert!(max_diff(&y, &want_y) < 1e-2, "linear onto the stream: {}", max_diff(&y, &want_y));
    }

    #[test]
    fn embedding_starts_an_f32_stream() {
        let emu = Device::open_with(DeviceKind::CudaEmu, StorageDtype::Bf16).unwrap();
        let (vocab, t, d) = (11, 5, 6);
        let (table, pos) = (rand_vec(vocab * d, 7, 1.0), rand_vec(t * d, 8, 1.0));
        let ids = vec![vec![3, 0, 10, 2, 2], vec![1, 1, 4, 9, 7]];
        let run = |dev: Option<&Device>| {
            let (tt, pt) = (tensor(dev, &table, &[vocab, d], DType::Bf16), tensor(dev, &pos, &[t, d], DType::Bf16));
            ops::embedding(&ids, &tt, &pt, DType::F32).unwrap()
        };
        let (got, want) = (run(Some(&emu)), run(None));
        assert_eq!(dtype(&got), DType::F32);
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap(), "a sum of two bf16 values is exact in f32");
    }
}
