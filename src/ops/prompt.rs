//! CoOp's prompt: token embeddings in which learned context vectors take the place of some tokens' embeddings
//! (the placeholder words of "X X X X {class}."), plus position embeddings. The context is the only tracked
//! input; the vocabulary table and the positions stay frozen.

use crate::autograd::{self, Backward};
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

use super::par_rows;

const OP: &str = "prompt_embedding";

/// `[B, T, D]`: row t of sequence b is `ctx[b, t − at]` (or `ctx[t − at]` for a context `[n, D]` shared by
/// every sequence) for `at ≤ t < at + n`, else `table[ids[b][t]]`; then `pos[t]` is added.
pub fn prompt_embedding(ids: &[Vec<u32>], table: &Tensor, pos: &Tensor, ctx: &Tensor, at: usize) -> Result<Tensor> {
    let [vocab, d] = table.dims::<2>(OP)?;
    let t = ids.first().map_or(0, Vec::len);
    let (shared, n) = context_shape(ctx, ids.len(), d)?;
    if ids.is_empty()
        || ids.iter().any(|s| s.len() != t)
        || at + n > t
        || pos.shape().len() != 2
        || pos.shape()[0] < t
        || pos.shape()[1] != d
    {
        let why = format!(
            "{} sequences of {t} tokens, context {:?} at {at}, positions {:?}",
            ids.len(),
            ctx.shape(),
            pos.shape()
        );
        return Err(Error::shape(OP, why));
    }
    if let Some(bad) = ids.iter().flatten().find(|&&id| id as usize >= vocab) {
        return Err(Error::shape(OP, format!("token id {bad} outside the vocabulary of {vocab}")));
    }
    if table.is_tracked() || pos.is_tracked() {
        return Err(Error::invalid(OP, "only the context is trained; the token and position tables are frozen"));
    }
    let [Storage::Cpu(_), Storage::Cpu(_), Storage::Cpu(_)] = [table.storage(), pos.storage(), ctx.storage()] else {
        return Err(autograd::cpu_only(OP));
    };
    let (tab, positions, context) = (table.cpu_slice()?, pos.cpu_slice()?, ctx.cpu_slice()?);
    let mut out = vec![0f32; ids.len() * t * d];
    par_rows(&mut out, d, |row, dst| {
        let (b, ti) = (row / t, row % t);
        let source = match ti.checked_sub(at).filter(|&i| i < n) {
            Some(i) => &context[(if shared { i } else { b * n + i }) * d..][..d],
            None => &tab[ids[b][ti] as usize * d..][..d],
        };
        dst.iter_mut().zip(source.iter().zip(&positions[ti * d..][..d])).for_each(|(o, (x, p))| *o = x + p);
    });
    let out = Tensor::from_vec(out, &[ids.len(), t, d])?;
    Ok(autograd::record(out, &[ctx], || PromptBackward { ctx: ctx.clone(), at }))
}

/// (shared by every sequence, context length) of a `[B, n, D]` or `[n, D]` context.
fn context_shape(ctx: &Tensor, sequences: usize, d: usize) -> Result<(bool, usize)> {
    match *ctx.shape() {
        [n, cd] if cd == d => Ok((true, n)),
        [b, n, cd] if cd == d && b == sequences => Ok((false, n)),
        _ => Err(Error::shape(OP, format!("context {:?} for {sequences} sequences of width {d}", ctx.shape()))),
    }
}

/// The context gets the gradient of the rows it filled (summed over sequences when shared).
struct PromptBackward {
    ctx: Tensor,
    at: usize,
}

impl Backward for PromptBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.ctx]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let Storage::Cpu(_) = grad.storage() else { return Err(autograd::cpu_only(OP)) };
        let [b, t, d] = grad.dims::<3>(OP)?;
        let (shared, n) = context_shape(&self.ctx, b, d)?;
        let g = grad.cpu_slice()?;
        let mut dctx = vec![0f32; self.ctx.numel()];
        for bi in 0..b {
            for i in 0..n {
                let dst = &mut dctx[(if shared { i } else { bi * n + i }) * d..][..d];
                dst.iter_mut().zip(&g[(bi * t + self.at + i) * d..][..d]).for_each(|(o, g)| *o += g);
            }
        }
        Ok(vec![Some(Tensor::from_vec(dctx, self.ctx.shape())?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{fd_grad, rand_vec, rel_err, to_f64, weighted_sum};

    #[test]
    fn context_replaces_tokens_and_gets_their_gradient() {
        let (vocab, d, t, at) = (6, 3, 5, 1);
        let table = Tensor::from_vec(rand_vec(vocab * d, 1, 1.0), &[vocab, d]).unwrap();
        let pos = Tensor::from_vec(rand_vec(t * d, 2, 1.0), &[t, d]).unwrap();
        let ids = vec![vec![0, 5, 5, 2, 1], vec![0, 5, 5, 3, 4]];
        for shared in [false, true] {
            let shape: Vec<usize> = if shared { vec![2, d] } else { vec![2, 2, d] };
            let ctx_values = rand_vec(shape.iter().product(), 3, 1.0);
            let ctx = Tensor::from_vec(ctx_values.clone(), &shape).unwrap().variable();
            let y = prompt_embedding(&ids, &table, &pos, &ctx, at).unwrap();
            let forward64 = |c: &[f64]| -> Vec<f64> {
                let (tab, p) = (table.to_vec().unwrap(), pos.to_vec().unwrap());
                let mut out = Vec::new();
                for (b, seq) in ids.iter().enumerate() {
                    for (ti, &id) in seq.iter().enumerate() {
                        for j in 0..d {
                            let x = if (at..at + 2).contains(&ti) {
                                c[(if shared { 0 } else { b * 2 }) * d + (ti - at) * d + j]
                            } else {
                                tab[id as usize * d + j] as f64
                            };
                            out.push(x + p[ti * d + j] as f64);
                        }
                    }
                }
                out
            };
            assert!(rel_err(&y.to_vec().unwrap(), &forward64(&to_f64(&ctx_values))) < 1e-7);
            let up = rand_vec(2 * t * d, 4, 1.0);
            let grads = autograd::backward_with(&y, &Tensor::from_vec(up.clone(), &[2, t, d]).unwrap()).unwrap();
            let want = fd_grad(&to_f64(&ctx_values), |c| weighted_sum(&forward64(c), &up));
            let err = rel_err(&grads.get(&ctx).unwrap().to_vec().unwrap(), &want);
            assert!(err < 1e-6, "shared={shared}: {err}");
        }
        let wide = Tensor::from_vec(vec![1.0; 4 * d], &[4, d]).unwrap();
        let err = prompt_embedding(&ids, &table, &pos, &wide, 2).unwrap_err().to_string();
        assert!(err.contains(OP), "{err}");
    }
}
