//! Backward of `linear`: y = res + ls ⊙ act(z), z = x·Wᵀ + Σ scale·(x·Aᵀ)·Bᵀ + b.
//! With dz = g ⊙ ls ⊙ act′(z): dx = dz·W + Σ scale·(dz·B)·A, dW = dzᵀ·x, db = Σ dz, dB = scale·dzᵀ·(x·Aᵀ),
//! dA = scale·(dz·B)ᵀ·x, d ls = Σ g ⊙ act(z), d res = g. Each product is computed only when the tensor it feeds
//! is tracked, so a frozen weight's gradient GEMM never runs. z is recomputed rather than kept.

use crate::autograd::{self, Backward};
use crate::error::Result;
use crate::ops::{par_rows, Activation};
use crate::tensor::{Storage, Tensor};

use super::cpu;
use super::{Epilogue, LoraTerm};
use crate::ops::matmul::{matmul, Layout};

/// Every tensor `linear` reads, in the order `LinearBackward` returns gradients.
pub(super) fn inputs<'a>(x: &'a Tensor, w: &'a Tensor, e: &Epilogue<'a>) -> Vec<&'a Tensor> {
    let mut all = vec![x, w];
    all.extend(e.bias);
    all.extend(e.layer_scale);
    all.extend(e.residual);
    for term in e.lora {
        all.extend([&term.a, &term.b]);
    }
    all
}

pub(super) struct LinearBackward {
    x: Tensor,
    w: Tensor,
    bias: Option<Tensor>,
    activation: Activation,
    layer_scale: Option<Tensor>,
    residual: Option<Tensor>,
    lora: Vec<LoraTerm>,
}

impl LinearBackward {
    pub(super) fn new(x: &Tensor, w: &Tensor, e: &Epilogue) -> LinearBackward {
        LinearBackward {
            x: x.clone(),
            w: w.clone(),
            bias: e.bias.cloned(),
            activation: e.activation,
            layer_scale: e.layer_scale.cloned(),
            residual: e.residual.cloned(),
            lora: e.lora.to_vec(),
        }
    }

    /// The forward's epilogue, over the kept tensors.
    fn epilogue(&self) -> Epilogue<'_> {
        Epilogue {
            row_norm: None,
            lora: &self.lora,
            bias: self.bias.as_ref(),
            activation: self.activation,
            layer_scale: self.layer_scale.as_ref(),
            residual: self.residual.as_ref(),
        }
    }

    /// z = x·Wᵀ + LoRA + b, as the forward computed it before the activation (the CPU kernel records nothing).
    fn pre_activation(&self, (m, n, k): (usize, usize, usize)) -> Result<Vec<f32>> {
        let e = Epilogue::bias(self.bias.as_ref()).with_lora(&self.lora);
        cpu::linear(self.x.cpu_slice()?, self.w.cpu_slice()?, None, (m, n, k), &e)
    }
}

impl Backward for LinearBackward {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn inputs(&self) -> Vec<&Tensor> {
        inputs(&self.x, &self.w, &self.epilogue())
    }

    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        if !self.inputs().iter().chain([&grad]).all(|t| matches!(t.storage(), Storage::Cpu(_))) {
            return Err(autograd::cpu_only("linear"));
        }
        let [n, k] = [self.w.shape()[0], self.w.shape()[1]];
        let m = self.x.rows();
        let g = grad.cpu_slice()?;
        let needs_z = self.activation != Activation::None || tracked(&self.layer_scale);
        let z = if needs_z { Some(self.pre_activation((m, n, k))?) } else { None };
        let dz = self.grad_pre_activation(g, z.as_deref(), n)?;

        let x = self.x.cpu_slice()?;
        // Per LoRA term, t = dz[:, its columns]·B: the gradient of x·Aᵀ up to the scale, shared by dA and dx.
        let lora_t = self
            .lora
            .iter()
            .map(|term| (term.a.is_tracked() || self.x.is_tracked()).then(|| lora_grad_u(term, &dz, m, n)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut out: Vec<Option<Tensor>> = Vec::new();
        out.push(self.x.is_tracked().then(|| self.grad_x(&dz, &lora_t, (m, n, k))).transpose()?);
        out.push(
            self.w
                .is_tracked()
                .then(|| Tensor::from_vec(matmul(&dz, Layout::Transposed, x, Layout::RowMajor, (n, m, k)), &[n, k]))
                .transpose()?,
        );
        if let Some(b) = &self.bias {
            out.push(b.is_tracked().then(|| Tensor::from_vec(column_sums(&dz, n), b.shape())).transpose()?);
        }
        if let Some(ls) = &self.layer_scale {
            let act_z = |z: &[f32]| z.iter().map(|&v| self.activation.apply(v)).collect::<Vec<_>>();
            let grad_ls = || Tensor::from_vec(column_sums(&product(g, &act_z(z.as_deref().unwrap())), n), ls.shape());
            out.push(ls.is_tracked().then(grad_ls).transpose()?);
        }
        if let Some(res) = &self.residual {
            out.push(res.is_tracked().then(|| grad.detach()));
        }
        for (term, t) in self.lora.iter().zip(&lora_t) {
            let (da, db) = grad_lora(term, t.as_deref(), &dz, x, (m, n, k))?;
            out.extend([da, db]);
        }
        Ok(out)
    }
}

impl LinearBackward {
    /// dz = g ⊙ ls ⊙ act′(z).
    fn grad_pre_activation(&self, g: &[f32], z: Option<&[f32]>, n: usize) -> Result<Vec<f32>> {
        let mut dz = g.to_vec();
        let z = z.filter(|_| self.activation != Activation::None);
        let ls = self.layer_scale.as_ref().map(|t| t.cpu_slice()).transpose()?;
        par_rows(&mut dz, n, |r, row| {
            if let Some(z) = z {
                self.activation.scale_by_derivative(row, &z[r * n..][..n]);
            }
            if let Some(ls) = ls {
                row.iter_mut().zip(ls).for_each(|(d, s)| *d *= s);
            }
        });
        Ok(dz)
    }

    /// dx = dz·W + Σ scale·mask ⊙ (dz_cols·B)·A, in the input's shape.
    fn grad_x(&self, dz: &[f32], lora_t: &[Option<Vec<f32>>], (m, n, k): (usize, usize, usize)) -> Result<Tensor> {
        let mut dx = matmul(dz, Layout::RowMajor, self.w.cpu_slice()?, Layout::RowMajor, (m, n, k));
        for (term, t) in self.lora.iter().zip(lora_t) {
            let t = t.as_deref().expect("computed when x is tracked");
            let part = matmul(t, Layout::RowMajor, term.a.cpu_slice()?, Layout::RowMajor, (m, term.rank(), k));
            let mask = |i: usize| term.dropout.map_or(1.0, |d| d.mask(i));
            dx.iter_mut().zip(&part).enumerate().for_each(|(i, (d, p))| *d += term.scale * mask(i) * p);
        }
        Tensor::from_vec(dx, self.x.shape())
    }
}

/// dz restricted to the term's columns, times B: `[m, r]` (the gradient of u = x·Aᵀ, up to the scale).
fn lora_grad_u(term: &LoraTerm, dz: &[f32], m: usize, n: usize) -> Result<Vec<f32>> {
    let len = term.len();
    let cols: Vec<f32> = dz.chunks(n).flat_map(|row| row[term.start..][..len].iter().copied()).collect();
    Ok(matmul(&cols, Layout::RowMajor, term.b.cpu_slice()?, Layout::RowMajor, (m, len, term.rank())))
}

/// (dA, dB) of one LoRA term, each only when tracked.
fn grad_lora(
    term: &LoraTerm,
    t: Option<&[f32]>,
    dz: &[f32],
    x: &[f32],
    (m, n, k): (usize, usize, usize),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let (r, len) = (term.rank(), term.len());
    let scaled = |v: Vec<f32>| v.into_iter().map(|e| e * term.scale).collect::<Vec<_>>();
    let x = &term.input(x);
    let da = match t.filter(|_| term.a.is_tracked()) {
        Some(t) => {
            Some(Tensor::from_vec(scaled(matmul(t, Layout::Transposed, x, Layout::RowMajor, (r, m, k))), &[r, k])?)
        }
        None => None,
    };
    let db = if term.b.is_tracked() {
        let u = matmul(x, Layout::RowMajor, term.a.cpu_slice()?, Layout::Transposed, (m, k, r));
        let cols: Vec<f32> = dz.chunks(n).flat_map(|row| row[term.start..][..len].iter().copied()).collect();
        let db = matmul(&cols, Layout::Transposed, &u, Layout::RowMajor, (len, m, r));
        Some(Tensor::from_vec(scaled(db), &[len, r])?)
    } else {
        None
    };
    Ok((da, db))
}

fn tracked(t: &Option<Tensor>) -> bool {
    t.as_ref().is_some_and(Tensor::is_tracked)
}

fn column_sums(values: &[f32], n: usize) -> Vec<f32> {
    let mut sums = vec![0f64; n];
    for row in values.chunks(n) {
        sums.iter_mut().zip(row).for_each(|(s, v)| *s += *v as f64);
    }
    sums.into_iter().map(|s| s as f32).collect()
}

fn product(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::backward_with;
    use crate::ops::linear::LoraDropout;
    use crate::ops::test_util::{erf64, fd_grad, rand_vec, rel_err, to_f64, weighted_sum};

    /// Shapes of one case: x [m, k], W [n, k], a LoRA term of rank r on columns start..start+len.
    struct Case {
        m: usize,
        n: usize,
        k: usize,
        r: usize,
        start: usize,
        len: usize,
        scale: f64,
        activation: Activation,
        dropout: Option<LoraDropout>,
    }

    fn act64(a: Activation, z: f64) -> f64 {
        match a {
            Activation::None => z,
            Activation::Gelu => 0.5 * z * (1.0 + erf64(z / 2f64.sqrt())),
            Activation::QuickGelu => z / (1.0 + (-1.702 * z).exp()),
            Activation::Tanh => z.tanh(),
        }
    }

    /// The forward in float64 from [x, W, b, ls, res, A, B].
    fn forward64(c: &Case, p: &[Vec<f64>]) -> Vec<f64> {
        let (x, w, b, ls, res, a, bb) = (&p[0], &p[1], &p[2], &p[3], &p[4], &p[5], &p[6]);
        let mut out = vec![0f64; c.m * c.n];
        for i in 0..c.m {
            let kept = |e: usize| c.dropout.map_or(1.0, |d| d.mask(e) as f64);
            let u: Vec<f64> =
                (0..c.r).map(|q| (0..c.k).map(|t| x[i * c.k + t] * kept(i * c.k + t) * a[q * c.k + t]).sum()).collect();
            for j in 0..c.n {
                let mut z = (0..c.k).map(|t| x[i * c.k + t] * w[j * c.k + t]).sum::<f64>() + b[j];
                if (c.start..c.start + c.len).contains(&j) {
                    z += c.scale * (0..c.r).map(|q| u[q] * bb[(j - c.start) * c.r + q]).sum::<f64>();
                }
                out[i * c.n + j] = res[i * c.n + j] + ls[j] * act64(c.activation, z);
            }
        }
        out
    }

    #[test]
    fn gradients_match_float64_finite_differences() {
        let cases = [
            Case { m: 1, n: 1, k: 1, r: 1, start: 0, len: 1, scale: 2.0, activation: Activation::None, dropout: None },
            Case {
                m: 5,
                n: 7,
                k: 3,
                r: 2,
                start: 2,
                len: 4,
                scale: 0.5,
                activation: Activation::Gelu,
                dropout: Some(LoraDropout { p: 0.25, seed: 3 }),
            },
            Case {
                m: 13,
                n: 17,
                k: 11,
                r: 3,
                start: 9,
                len: 8,
                scale: 1.5,
                activation: Activation::QuickGelu,
                dropout: None,
            },
            Case {
                m: 6,
                n: 9,
                k: 20,
                r: 4,
                start: 0,
                len: 9,
                scale: 1.0,
                activation: Activation::Tanh,
                dropout: Some(LoraDropout { p: 0.5, seed: 11 }),
            },
        ];
        for (seed, c) in cases.iter().enumerate() {
            let seed = 10 * seed as u64;
            let sizes = [c.m * c.k, c.n * c.k, c.n, c.n, c.m * c.n, c.r * c.k, c.len * c.r];
            let params: Vec<Vec<f32>> =
                sizes.iter().enumerate().map(|(i, &s)| rand_vec(s, seed + i as u64, 1.0)).collect();
            let shapes: [&[usize]; 7] =
                [&[c.m, c.k], &[c.n, c.k], &[c.n], &[c.n], &[c.m, c.n], &[c.r, c.k], &[c.len, c.r]];
            let vars: Vec<Tensor> =
                params.iter().zip(shapes).map(|(p, s)| Tensor::from_vec(p.clone(), s).unwrap().variable()).collect();
            let lora = [LoraTerm {
                start: c.start,
                a: vars[5].clone(),
                b: vars[6].clone(),
                scale: c.scale as f32,
                dropout: c.dropout,
            }];
            let e = Epilogue::bias(Some(&vars[2]))
                .with_activation(c.activation)
                .with_layer_scale(Some(&vars[3]))
                .with_residual(&vars[4])
                .with_lora(&lora);
            let y = crate::ops::linear(&vars[0], &vars[1], e).unwrap();
            let p64: Vec<Vec<f64>> = params.iter().map(|p| to_f64(p)).collect();
            assert!(rel_err(&y.to_vec().unwrap(), &forward64(c, &p64)) < 1e-5, "forward");

            let g = rand_vec(c.m * c.n, seed + 9, 1.0);
            let grads = backward_with(&y, &Tensor::from_vec(g.clone(), &[c.m, c.n]).unwrap()).unwrap();
            for (i, name) in ["x", "W", "b", "ls", "res", "A", "B"].iter().enumerate() {
                let want = fd_grad(&p64[i], |v| {
                    let mut p = p64.clone();
                    p[i] = v.to_vec();
                    weighted_sum(&forward64(c, &p), &g)
                });
                let got = grads.get(&vars[i]).unwrap().to_vec().unwrap();
                let err = rel_err(&got, &want);
                assert!(err < 1e-4, "d{name} m={} n={} k={} {:?}: {err}", c.m, c.n, c.k, c.activation);
            }
        }
    }

    #[test]
    fn frozen_weights_get_no_gradient() {
        let x = Tensor::from_vec(rand_vec(12, 1, 1.0), &[3, 4]).unwrap().variable();
        let w = Tensor::from_vec(rand_vec(20, 2, 1.0), &[5, 4]).unwrap();
        let b = Tensor::from_vec(rand_vec(5, 3, 1.0), &[5]).unwrap();
        let y = crate::ops::linear(&x, &w, Epilogue::bias(Some(&b)).with_activation(Activation::Gelu)).unwrap();
        let grads = backward_with(&y, &Tensor::from_vec(rand_vec(15, 4, 1.0), &[3, 5]).unwrap()).unwrap();
        assert!(grads.get(&x).is_some());
        assert!(grads.get(&w).is_none() && grads.get(&b).is_none() && !w.is_tracked());
        // Nothing is recorded when no input is tracked.
        assert!(!crate::ops::linear(&x.detach(), &w, Epilogue::bias(Some(&b))).unwrap().is_tracked());
    }

    #[test]
    fn rejects_lora_factors_that_do_not_fit() {
        let x = Tensor::from_vec(rand_vec(12, 1, 1.0), &[3, 4]).unwrap();
        let w = Tensor::from_vec(rand_vec(20, 2, 1.0), &[5, 4]).unwrap();
        let a = Tensor::from_vec(rand_vec(8, 3, 1.0), &[2, 4]).unwrap();
        let b = Tensor::from_vec(rand_vec(8, 4, 1.0), &[4, 2]).unwrap();
        let term = [LoraTerm { start: 3, a, b, scale: 1.0, dropout: None }]; // columns 3..7 of 5
        let err = crate::ops::linear(&x, &w, Epilogue::bias(None).with_lora(&term)).unwrap_err().to_string();
        assert!(err.contains("linear") && err.contains("LoRA"), "{err}");
    }
}
