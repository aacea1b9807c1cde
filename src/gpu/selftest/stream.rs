//! Cases of the mixed-dtype kernels around an f32 residual stream (CLIP's text tower): the token embedding
//! written as f32, the residual add of a 16-bit block output into f32, and LayerNorm from f32 into 16-bit.
//! Their f32 outputs are held to the f32 tolerance, so a kernel that rounded through 16 bits would fail.

use rand::Rng;

use super::tokens::NAN_MARK;
use super::{case, poisoned, random, tol, Case};
use crate::gpu::{ops, reference as r, DType};

const HALVES: [DType; 2] = [DType::Bf16, DType::F16];

pub(super) fn stream_cases(out: &mut Vec<Case>) {
    for dt in HALVES {
        add_cases(out, dt);
        layernorm_cases(out, dt);
        embedding_cases(out, dt);
    }
}

fn add_cases(out: &mut Vec<Case>, dt: DType) {
    for n in [1usize, 1000, 4099] {
        out.push(case(
            "elementwise",
            format!("add_f32_{}", dt.suffix()),
            format!("[{n}]"),
            tol(DType::F32),
            Box::new(move |dev, rng| {
                let (a, b) = (random(rng, n, -3.0, 3.0, DType::F32), random(rng, n, -3.0, 3.0, dt));
                let y = poisoned(dev, DType::F32, n)?;
                ops::elementwise::add(dev, &dev.upload(&a, DType::F32)?, &dev.upload(&b, dt)?, &y)?;
                Ok((dev.download(&y)?, a.iter().zip(&b).map(|(&p, &q)| p as f64 + q as f64).collect()))
            }),
        ));
    }
}

fn layernorm_cases(out: &mut Vec<Case>, dt: DType) {
    // Rows near 100 with a spread of 1 lose their shape if x is rounded to 16 bits before the statistics.
    for (rows, cols, lo, hi) in
        [(1usize, 7usize, -2.0f32, 6.0f32), (5, 768, -2.0, 6.0), (3, 1030, 100.0, 101.0), (2, 48, 100.0, 101.0)]
    {
        out.push(case(
            "layernorm",
            format!("layernorm_fwd_f32_{}", dt.suffix()),
            format!("[{rows},{cols}] x in [{lo},{hi})"),
            tol(dt),
            Box::new(move |dev, rng| {
                let x = random(rng, rows * cols, lo, hi, DType::F32);
                let (g, b) = (random(rng, cols, 0.5, 1.5, dt), random(rng, cols, -0.5, 0.5, dt));
                let y = poisoned(dev, dt, rows * cols)?;
                let (xb, gb, bb) = (dev.upload(&x, DType::F32)?, dev.upload(&g, dt)?, dev.upload(&b, dt)?);
                ops::layernorm::layernorm(dev, rows, cols, &xb, &gb, &bb, &y, 1e-6)?;
                Ok((dev.download(&y)?, r::layernorm(rows, cols, &x, &g, &b, 1e-6)))
            }),
        ));
    }
}

fn embedding_cases(out: &mut Vec<Case>, dt: DType) {
    // (batch, t, d, vocab, a bad id), as the 16-bit embedding cases.
    for (batch, t, d, vocab, bad) in [(1usize, 1usize, 16usize, 3usize, false), (3, 17, 48, 99, true)] {
        out.push(case(
            "tokens",
            format!("embedding_{}_f32", dt.suffix()),
            format!("[{batch}x{t}] d{d} vocab{vocab}{}", if bad { " bad id" } else { "" }),
            tol(DType::F32),
            Box::new(move |dev, rng| {
                let rows = batch * t;
                let mut ids: Vec<i64> = (0..rows).map(|_| rng.random_range(0..vocab as i64)).collect();
                if bad {
                    ids[rows - 1] = vocab as i64;
                }
                let (table, pos) = (random(rng, vocab * d, -1.0, 1.0, dt), random(rng, (t + 2) * d, -1.0, 1.0, dt));
                let id_f: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
                let y = poisoned(dev, DType::F32, rows * d)?;
                let (ib, tb, pb) = (dev.upload(&id_f, DType::I32)?, dev.upload(&table, dt)?, dev.upload(&pos, dt)?);
                ops::tokens::embedding(dev, rows, t, d, &ib, &tb, vocab, &pb, &y)?;
                let got = dev.download(&y)?.into_iter().map(|v| if v.is_nan() { NAN_MARK } else { v }).collect();
                let want = r::embedding(t, d, &ids, &table, vocab, &pos);
                Ok((got, want.into_iter().map(|v| if v.is_nan() { NAN_MARK as f64 } else { v }).collect()))
            }),
        ));
    }
}
