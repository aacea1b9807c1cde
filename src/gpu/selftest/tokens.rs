//! Cases of `kernels/tokens.cu` and of the generic (any head dim, any stride) attention kernel.

use rand::Rng;

use super::{case, poisoned, random, tol, Case, DTYPES};
use crate::error::{Error, Result};
use crate::gpu::{ops, reference as r, DType, GpuBuffer, GpuDevice};

/// A value no correct output of these cases takes: NaN in output and reference both become it, so a NaN row
/// can be checked by `compare` (which fails on any NaN).
pub(super) const NAN_MARK: f32 = 7.0;

pub(super) fn token_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        // (b, n, r, d): one patch, odd widths, a ViT-like 196 tokens; DINOv2-style register tokens.
        for (b, n, nr, d) in [
            (1usize, 1usize, 0usize, 12usize),
            (2, 5, 0, 37),
            (3, 16, 0, 48),
            (2, 196, 0, 16),
            (2, 9, 4, 24),
            (1, 3, 1, 5),
        ] {
            out.push(case(
                "tokens",
                format!("assemble_tokens_{}", dt.suffix()),
                format!("[{b},{n},{d}]{}", if nr > 0 { format!(" +{nr} registers") } else { String::new() }),
                tol(dt),
                Box::new(move |dev, rng| {
                    let patches = random(rng, b * n * d, -2.0, 2.0, dt);
                    let (cls, pos) = (random(rng, d, -1.0, 1.0, dt), random(rng, (n + 1) * d, -1.0, 1.0, dt));
                    let reg = random(rng, nr * d, -1.0, 1.0, dt);
                    let y = poisoned(dev, dt, b * (1 + nr + n) * d)?;
                    let (pb, cb, qb) = (dev.upload(&patches, dt)?, dev.upload(&cls, dt)?, dev.upload(&pos, dt)?);
                    let rb = if nr > 0 { Some(dev.upload(&reg, dt)?) } else { None };
                    ops::tokens::assemble_tokens(dev, b, n, d, &pb, &cb, &qb, rb.as_ref().map(|g| (nr, g)), &y)?;
                    Ok((dev.download(&y)?, r::assemble_tokens(b, n, d, &patches, &cls, &pos, &reg)))
                }),
            ));
        }
        // (batch, t, d, vocab, a bad id): CLIP-text-like rows of t tokens; one case with an id past the vocab.
        for (batch, t, d, vocab, bad) in
            [(1usize, 1usize, 16usize, 3usize, false), (2, 5, 12, 50, false), (3, 17, 48, 99, true)]
        {
            out.push(case(
                "tokens",
                format!("embedding_{}", dt.suffix()),
                format!("[{batch}x{t}] d{d} vocab{vocab}{}", if bad { " bad id" } else { "" }),
                tol(dt),
                Box::new(move |dev, rng| {
                    let rows = batch * t;
                    let mut ids: Vec<i64> = (0..rows).map(|_| rng.random_range(0..vocab as i64)).collect();
                    if bad {
                        (ids[1], ids[rows - 1]) = (vocab as i64, vocab as i64 + 1000);
                    }
                    let table = random(rng, vocab * d, -1.0, 1.0, dt);
                    let pos = random(rng, (t + 2) * d, -1.0, 1.0, dt); // longer than t, as CLIP's 77 rows
                    let id_f: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
                    let y = poisoned(dev, dt, rows * d)?;
                    let (ib, tb, pb) = (dev.upload(&id_f, DType::I32)?, dev.upload(&table, dt)?, dev.upload(&pos, dt)?);
                    ops::tokens::embedding(dev, rows, t, d, &ib, &tb, vocab, &pb, &y)?;
                    let got = dev.download(&y)?.into_iter().map(|v| if v.is_nan() { NAN_MARK } else { v }).collect();
                    let want = r::embedding(t, d, &ids, &table, vocab, &pos);
                    Ok((got, want.into_iter().map(|v| if v.is_nan() { NAN_MARK as f64 } else { v }).collect()))
                }),
            ));
        }
        // (rows, d, a zero row): odd widths, a width past one block's 128 threads, an all-zero row.
        for (rows, d, zero) in [(1usize, 1usize, false), (3, 12, true), (4, 37, false), (2, 300, true)] {
            out.push(case(
                "tokens",
                format!("l2_normalize_{}", dt.suffix()),
                format!("[{rows},{d}]{}", if zero { " zero row" } else { "" }),
                tol(dt),
                Box::new(move |dev, rng| {
                    let mut x = random(rng, rows * d, -3.0, 3.0, dt);
                    if zero {
                        x[d..2 * d].fill(0.0);
                    }
                    let y = poisoned(dev, dt, rows * d)?;
                    ops::tokens::l2_normalize(dev, rows, d, &dev.upload(&x, dt)?, &y)?;
                    Ok((dev.download(&y)?, r::l2_normalize(rows, d, &x)))
                }),
            ));
        }
        // Two copies side by side fill the poisoned [rows, d_a + d_b] output: the concatenation of features.
        for (rows, d_a, d_b) in [(1usize, 1usize, 5usize), (5, 12, 37), (17, 48, 16)] {
            out.push(case(
                "tokens",
                format!("copy_cols_{}", dt.suffix()),
                format!("[{rows},{d_a}]+[{rows},{d_b}]"),
                tol(dt),
                Box::new(move |dev, rng| {
                    let (a, b) = (random(rng, rows * d_a, -2.0, 2.0, dt), random(rng, rows * d_b, -2.0, 2.0, dt));
                    let w = d_a + d_b;
                    let y = poisoned(dev, dt, rows * w)?;
                    ops::tokens::copy_cols(dev, rows, d_a, &dev.upload(&a, dt)?, w, 0, &y)?;
                    ops::tokens::copy_cols(dev, rows, d_b, &dev.upload(&b, dt)?, w, d_a, &y)?;
                    Ok((dev.download(&y)?, r::concat_cols(rows, d_a, &a, d_b, &b)))
                }),
            ));
        }
    }
}

/// Where q, k and v live: separate contiguous buffers, one fused [rows, 3·h·d] projection, or separate buffers
/// with a padded row stride and a one-element offset (misaligned for the tensor-core kernel).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    Separate,
    Fused,
    Padded,
}

/// q, k or v as a device view of row stride `ld` at element `off`, and its contiguous [rows, w] host copy.
fn strided(
    dev: &GpuDevice,
    data: &[f32],
    rows: usize,
    ld: usize,
    off: usize,
    w: usize,
    dt: DType,
) -> Result<(GpuBuffer, Vec<f32>)> {
    let buf = dev.upload(data, dt)?.slice(off, data.len() - off)?;
    let contiguous = (0..rows).flat_map(|r| data[off + r * ld..][..w].to_vec()).collect();
    Ok((buf, contiguous))
}

pub(super) fn generic_attention_cases(out: &mut Vec<Case>) {
    use Layout::*;
    // (dtype, batch, heads, q_len, k_len, head dim, causal, layout): the tiny test models' head dims 12 and 16
    // with hidden 48 (fused ld 144), single token, odd dims, more keys than queries, the largest head dim, and
    // a compiled head dim (64) pushed to the fallback by misalignment.
    let shapes = [
        (DType::Bf16, 1usize, 1usize, 1usize, 1usize, 12usize, false, Separate),
        (DType::Bf16, 2, 4, 5, 5, 12, false, Fused),
        (DType::F16, 2, 3, 17, 17, 16, true, Fused),
        (DType::Bf16, 1, 2, 37, 37, 37, false, Separate),
        (DType::F32, 2, 1, 33, 33, 48, true, Padded),
        (DType::Bf16, 1, 2, 5, 17, 16, true, Padded),
        (DType::F16, 1, 1, 40, 40, 256, false, Separate),
        (DType::Bf16, 1, 2, 70, 70, 64, true, Padded),
        (DType::F32, 1, 3, 3, 3, 1, false, Separate),
    ];
    for (dt, b, h, tq, tk, d, causal, layout) in shapes {
        let shape = format!("B{b} H{h} T{tq}x{tk} D{d}{} {layout:?}", if causal { " causal" } else { "" });
        out.push(case(
            "attention",
            format!("attention_fwd_generic_{}", dt.suffix()),
            shape,
            tol(dt),
            Box::new(move |dev, rng| {
                let w = h * d;
                let o = poisoned(dev, dt, b * tq * w)?;
                let ((qb, q), (kb, k), (vb, v), ld) = match layout {
                    Fused => {
                        let qkv = random(rng, b * tq * 3 * w, -2.0, 2.0, dt);
                        let ld = 3 * w;
                        let part = |p: usize| strided(dev, &qkv, b * tq, ld, p * w, w, dt);
                        (part(0)?, part(1)?, part(2)?, ld)
                    }
                    Separate | Padded => {
                        let (ld, off) = if layout == Padded { (w + 3, 1) } else { (w, 0) };
                        let mut one = |rows: usize, lo: f32, hi: f32| {
                            strided(dev, &random(rng, off + rows * ld, lo, hi, dt), rows, ld, off, w, dt)
                        };
                        (one(b * tq, -2.0, 2.0)?, one(b * tk, -2.0, 2.0)?, one(b * tk, -1.0, 1.0)?, ld)
                    }
                };
                let mut att = ops::attention::Attention::new(b, h, tq, d, &qb, &kb, &vb, &o).causal(causal);
                (att.k_len, att.ld_q, att.ld_k, att.ld_v) = (tk, ld, ld, ld);
                let expected = format!("attention_fwd_generic_{}", dt.suffix());
                if att.kernel_name(dev) != expected {
                    return Err(Error::kernel(&expected, format!("launch would pick {}", att.kernel_name(dev))));
                }
                att.launch(dev)?;
                Ok((dev.download(&o)?, r::attention(b, h, tq, tk, d, &q, &k, &v, att.scale as f64, causal)))
            }),
        ));
    }
}
