//! Token bookkeeping: prepend the class token and add position embeddings, look up token embeddings, pick one
//! token per sequence (CLS, end-of-text), average patch tokens, concatenate features.

use crate::autograd::{self, Backward};
use crate::error::{Error, Result};
use crate::gpu::DType;
use crate::tensor::{Storage, Tensor};

use super::par_rows;

/// `[B, N, D]` patches → `[B, 1+R+N, D]` = concat(cls + pos[0], registers, patches + pos[1..]), with cls `[D]`,
/// pos `[1+N, D]` and optional register tokens `[R, D]` (DINOv2 with registers: they take no position).
pub fn assemble_tokens(patches: &Tensor, cls: &Tensor, pos: &Tensor, registers: Option<&Tensor>) -> Result<Tensor> {
    crate::autograd::untracked(
        "assemble_tokens",
        &[patches, cls, pos].into_iter().chain(registers).collect::<Vec<_>>(),
    )?;
    let [b, n, d] = patches.dims::<3>("assemble_tokens")?;
    let r = registers.map_or(0, |t| t.numel() / d.max(1));
    if cls.numel() != d || pos.shape() != [n + 1, d] || registers.is_some_and(|t| t.shape() != [r, d]) {
        return Err(Error::shape(
            "assemble_tokens",
            format!(
                "patches {:?}, class token {:?}, positions {:?}, registers {:?}",
                patches.shape(),
                cls.shape(),
                pos.shape(),
                registers.map(|t| t.shape())
            ),
        ));
    }
    let len = 1 + r + n;
    match patches.storage() {
        Storage::Cpu(_) => {
            let (src, cls, pos) = (patches.cpu_slice()?, cls.cpu_slice()?, pos.cpu_slice()?);
            let reg = registers.map(|t| t.cpu_slice()).transpose()?.unwrap_or(&[]);
            let mut out = vec![0f32; b * len * d];
            par_rows(&mut out, d, |row, dst| {
                let (bi, t) = (row / len, row % len);
                if t == 0 {
                    dst.iter_mut().zip(cls.iter().zip(pos)).for_each(|(o, (x, q))| *o = x + q);
                } else if t <= r {
                    dst.copy_from_slice(&reg[(t - 1) * d..][..d]);
                } else {
                    let (token, p) = (&src[(bi * n + t - 1 - r) * d..][..d], &pos[(t - r) * d..][..d]);
                    dst.iter_mut().zip(token.iter().zip(p)).for_each(|(o, (x, q))| *o = x + q);
                }
            });
            Tensor::from_vec(out, &[b, len, d])
        }
        Storage::Gpu(_) => super::gpu::assemble_tokens(patches, cls, pos, registers, [b, n, r, d]),
    }
}

/// Token embeddings of `ids` (one sequence per row, all of length T) plus position embeddings: `[B, T, D]`,
/// stored as `dtype` on a GPU (f32 starts an f32 residual stream; the CPU always holds f32).
pub fn embedding(ids: &[Vec<u32>], table: &Tensor, pos: &Tensor, dtype: DType) -> Result<Tensor> {
    crate::autograd::untracked("embedding", &[table, pos])?;
    let [vocab, d] = table.dims::<2>("embedding")?;
    let t = ids.first().map_or(0, Vec::len);
    if ids.iter().any(|s| s.len() != t) || pos.dims::<2>("embedding")?[0] < t || pos.shape()[1] != d {
        return Err(Error::shape(
            "embedding",
            format!("{} sequences of unequal length or longer than {:?}", ids.len(), pos.shape()),
        ));
    }
    if let Some(bad) = ids.iter().flatten().find(|&&id| id as usize >= vocab) {
        return Err(Error::shape("embedding", format!("token id {bad} outside the vocabulary of {vocab}")));
    }
    match table.storage() {
        Storage::Cpu(_) => {
            let (tab, pos) = (table.cpu_slice()?, pos.cpu_slice()?);
            let mut out = vec![0f32; ids.len() * t * d];
            par_rows(&mut out, d, |row, dst| {
                let id = ids[row / t][row % t] as usize;
                let (e, p) = (&tab[id * d..][..d], &pos[(row % t) * d..][..d]);
                dst.iter_mut().zip(e.iter().zip(p)).for_each(|(o, (x, q))| *o = x + q);
            });
            Tensor::from_vec(out, &[ids.len(), t, d])
        }
        Storage::Gpu(_) => super::gpu::embedding(ids, table, pos, [vocab, d], dtype),
    }
}

/// `x[b, index[b], :]` for each sequence: `[B, T, D]` → `[B, D]`.
pub fn select_rows(x: &Tensor, index: &[usize]) -> Result<Tensor> {
    let [b, t, d] = x.dims::<3>("select_rows")?;
    if index.len() != b || index.iter().any(|&i| i >= t) {
        return Err(Error::shape("select_rows", format!("indices {index:?} for shape {:?}", x.shape())));
    }
    let out = match x.storage() {
        Storage::Cpu(_) => {
            let src = x.cpu_slice()?;
            let out: Vec<f32> =
                index.iter().enumerate().flat_map(|(bi, &i)| src[(bi * t + i) * d..][..d].iter().copied()).collect();
            Tensor::from_vec(out, &[b, d])?
        }
        Storage::Gpu(_) => super::gpu::select_rows(x, index, [b, t, d])?,
    };
    Ok(autograd::record(out, &[x], || TokenGather { x: x.clone(), pick: Pick::Rows(index.to_vec()) }))
}

/// Mean over tokens `from..T` of `[B, T, D]` → `[B, D]` (DINOv2's classifier uses the patch-token mean).
pub fn mean_tokens(x: &Tensor, from: usize) -> Result<Tensor> {
    let [b, t, d] = x.dims::<3>("mean_tokens")?;
    if from >= t {
        return Err(Error::shape("mean_tokens", format!("start {from} for {t} tokens")));
    }
    let out = match x.storage() {
        Storage::Cpu(_) => {
            let src = x.cpu_slice()?;
            let mut out = vec![0f32; b * d];
            par_rows(&mut out, d, |bi, dst| {
                for ti in from..t {
                    dst.iter_mut().zip(&src[(bi * t + ti) * d..][..d]).for_each(|(o, v)| *o += v);
                }
                dst.iter_mut().for_each(|o| *o /= (t - from) as f32);
            });
            Tensor::from_vec(out, &[b, d])?
        }
        Storage::Gpu(_) => super::gpu::mean_tokens(x, from, [b, t, d])?,
    };
    Ok(autograd::record(out, &[x], || TokenGather { x: x.clone(), pick: Pick::MeanFrom(from) }))
}

/// Which tokens of `[B, T, D]` made each `[B, D]` output row.
enum Pick {
    Rows(Vec<usize>),
    MeanFrom(usize),
}

/// Backward of `select_rows` and `mean_tokens`: the row's gradient goes back to the tokens it came from.
struct TokenGather {
    x: Tensor,
    pick: Pick,
}

impl Backward for TokenGather {
    fn name(&self) -> &'static str {
        match self.pick {
            Pick::Rows(_) => "select_rows",
            Pick::MeanFrom(_) => "mean_tokens",
        }
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let [b, t, d] = self.x.dims::<3>(self.name())?;
        let Storage::Cpu(_) = grad.storage() else { return Err(autograd::cpu_only(self.name())) };
        let g = grad.cpu_slice()?;
        let mut dx = vec![0f32; b * t * d];
        for (bi, g_row) in g.chunks(d).enumerate() {
            let tokens = match &self.pick {
                Pick::Rows(index) => index[bi]..index[bi] + 1,
                Pick::MeanFrom(from) => *from..t,
            };
            let share = 1.0 / tokens.len() as f32;
            for ti in tokens {
                dx[(bi * t + ti) * d..][..d].iter_mut().zip(g_row).for_each(|(o, g)| *o = g * share);
            }
        }
        Ok(vec![Some(Tensor::from_vec(dx, self.x.shape())?)])
    }
}

/// `[B, D1]` ⧺ `[B, D2]` → `[B, D1+D2]`.
pub fn concat_last(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let ([n, d1], [n2, d2]) = (a.dims::<2>("concat_last")?, b.dims::<2>("concat_last")?);
    if n != n2 {
        return Err(Error::shape("concat_last", format!("{:?} and {:?}", a.shape(), b.shape())));
    }
    let out = match a.storage() {
        Storage::Cpu(_) => {
            let (x, y) = (a.cpu_slice()?, b.cpu_slice()?);
            let out: Vec<f32> =
                (0..n).flat_map(|i| x[i * d1..][..d1].iter().chain(&y[i * d2..][..d2]).copied()).collect();
            Tensor::from_vec(out, &[n, d1 + d2])?
        }
        Storage::Gpu(_) => super::gpu::concat_last(a, b, [n, d1, d2])?,
    };
    Ok(autograd::record(out, &[a, b], || ConcatBackward { parts: [a.clone(), b.clone()] }))
}

/// Each part gets its columns of the gradient.
struct ConcatBackward {
    parts: [Tensor; 2],
}

impl Backward for ConcatBackward {
    fn name(&self) -> &'static str {
        "concat_last"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        self.parts.iter().collect()
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let Storage::Cpu(_) = grad.storage() else { return Err(autograd::cpu_only("concat_last")) };
        let (g, width) = (grad.cpu_slice()?, grad.last_dim());
        let d1 = self.parts[0].last_dim();
        let columns = |range: std::ops::Range<usize>, part: &Tensor| {
            let values = g.chunks(width).flat_map(|row| row[range.clone()].iter().copied()).collect();
            Tensor::from_vec(values, part.shape())
        };
        let [a, b] = &self.parts;
        Ok(vec![
            a.is_tracked().then(|| columns(0..d1, a)).transpose()?,
            b.is_tracked().then(|| columns(d1..width, b)).transpose()?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_prepends_class_token_and_adds_positions() {
        let patches = Tensor::from_vec(vec![1., 2., 3., 4.], &[1, 2, 2]).unwrap();
        let cls = Tensor::from_vec(vec![10., 20.], &[2]).unwrap();
        let pos = Tensor::from_vec(vec![0.5, 0.5, 1., 1., 2., 2.], &[3, 2]).unwrap();
        let y = assemble_tokens(&patches, &cls, &pos, None).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![10.5, 20.5, 2., 3., 5., 6.]);
    }

    #[test]
    fn registers_follow_the_class_token_without_positions() {
        let patches = Tensor::from_vec(vec![1., 2., 3., 4.], &[1, 2, 2]).unwrap();
        let cls = Tensor::from_vec(vec![10., 20.], &[2]).unwrap();
        let pos = Tensor::from_vec(vec![0.5, 0.5, 1., 1., 2., 2.], &[3, 2]).unwrap();
        let reg = Tensor::from_vec(vec![-1., -2., -3., -4.], &[2, 2]).unwrap();
        let y = assemble_tokens(&patches, &cls, &pos, Some(&reg)).unwrap();
        assert_eq!(y.shape(), &[1, 5, 2]);
        assert_eq!(y.to_vec().unwrap(), vec![10.5, 20.5, -1., -2., -3., -4., 2., 3., 5., 6.]);
        let bad = Tensor::from_vec(vec![1.; 3], &[3, 1]).unwrap();
        assert!(assemble_tokens(&patches, &cls, &pos, Some(&bad)).is_err());
    }

    #[test]
    fn embedding_rejects_out_of_vocabulary_ids() {
        let table = Tensor::from_vec(vec![1.; 6], &[3, 2]).unwrap();
        let pos = Tensor::from_vec(vec![1.; 4], &[2, 2]).unwrap();
        assert!(embedding(&[vec![0, 3]], &table, &pos, DType::F32).is_err());
        let y = embedding(&[vec![2, 1]], &table, &pos, DType::F32).unwrap();
        assert_eq!(y.shape(), &[1, 2, 2]);
    }

    #[test]
    fn pooling_gradients_match_float64_finite_differences() {
        use crate::ops::test_util::{fd_grad, rand_vec, rel_err, to_f64, weighted_sum};
        let (b, t, d) = (3, 5, 4);
        let x = rand_vec(b * t * d, 1, 1.0);
        let var = Tensor::from_vec(x.clone(), &[b, t, d]).unwrap().variable();
        let index = [4, 0, 2];
        // concat(x[b, index[b]], mean of tokens 1.., as DINOv2's classifier input), in float64.
        let forward64 = |x: &[f64]| -> Vec<f64> {
            (0..b)
                .flat_map(|bi| {
                    let picked = (0..d).map(move |j| x[(bi * t + index[bi]) * d + j]);
                    let mean =
                        (0..d).map(move |j| (1..t).map(|ti| x[(bi * t + ti) * d + j]).sum::<f64>() / (t - 1) as f64);
                    picked.chain(mean).collect::<Vec<_>>()
                })
                .collect()
        };
        let y = concat_last(&select_rows(&var, &index).unwrap(), &mean_tokens(&var, 1).unwrap()).unwrap();
        let up = rand_vec(b * 2 * d, 2, 1.0);
        let grads = autograd::backward_with(&y, &Tensor::from_vec(up.clone(), &[b, 2 * d]).unwrap()).unwrap();
        let want = fd_grad(&to_f64(&x), |p| weighted_sum(&forward64(p), &up));
        let err = rel_err(&grads.get(&var).unwrap().to_vec().unwrap(), &want);
        assert!(err < 1e-6, "{err}");
    }

    #[test]
    fn select_mean_concat() {
        let x = Tensor::from_vec((0..12).map(|v| v as f32 + 1.0).collect(), &[2, 3, 2]).unwrap();
        assert_eq!(select_rows(&x, &[2, 0]).unwrap().to_vec().unwrap(), vec![5., 6., 7., 8.]);
        assert_eq!(mean_tokens(&x, 1).unwrap().to_vec().unwrap(), vec![4., 5., 10., 11.]);
        let a = Tensor::from_vec(vec![1., 2.], &[2, 1]).unwrap();
        assert_eq!(concat_last(&a, &a).unwrap().to_vec().unwrap(), vec![1., 1., 2., 2.]);
        assert!(select_rows(&x, &[3, 0]).is_err());
    }
}
