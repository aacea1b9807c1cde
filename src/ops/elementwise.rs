//! Element-wise ops: activations (also used as linear epilogues), residual add, row L2 normalisation.

use crate::autograd::{self, Backward};
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

use super::{math, par_rows};

/// Activation applied in a linear layer's epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    /// exact GELU, x·Φ(x) (transformers' `gelu`)
    Gelu,
    /// x·σ(1.702·x) (CLIP's `quick_gelu`)
    QuickGelu,
    Tanh,
}

impl Activation {
    /// Parse a transformers `hidden_act` value.
    pub fn from_hf(name: &str) -> Option<Activation> {
        match name {
            "gelu" | "gelu_python" => Some(Activation::Gelu),
            "quick_gelu" => Some(Activation::QuickGelu),
            "tanh" => Some(Activation::Tanh),
            "linear" | "identity" => Some(Activation::None),
            _ => None,
        }
    }

    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Gelu => 0.5 * x * (1.0 + math::erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::QuickGelu => x / (1.0 + math::exp(-1.702 * x)),
            Activation::Tanh => x.tanh(),
        }
    }

    /// d act / dx at `x`, for the backward.
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Activation::None => 1.0,
            Activation::Gelu => {
                let pdf = math::exp(-0.5 * x * x)
                    * (0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2);
                0.5 * (1.0 + math::erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * pdf
            }
            Activation::QuickGelu => {
                let s = 1.0 / (1.0 + math::exp(-1.702 * x));
                s + 1.702 * x * s * (1.0 - s)
            }
            Activation::Tanh => 1.0 - x.tanh().powi(2),
        }
    }

    /// `grads[i] *= derivative(z[i])`; one loop per activation so each vectorises.
    pub fn scale_by_derivative(self, grads: &mut [f32], z: &[f32]) {
        let each = |grads: &mut [f32], f: fn(f32) -> f32| grads.iter_mut().zip(z).for_each(|(g, &z)| *g *= f(z));
        match self {
            Activation::None => {}
            Activation::Gelu => each(grads, |z| Activation::Gelu.derivative(z)),
            Activation::QuickGelu => each(grads, |z| Activation::QuickGelu.derivative(z)),
            Activation::Tanh => each(grads, |z| Activation::Tanh.derivative(z)),
        }
    }

    /// Apply in place to a slice; one loop per activation so each vectorises.
    pub fn apply_slice(self, xs: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Gelu => xs.iter_mut().for_each(|x| *x = Activation::Gelu.apply(*x)),
            Activation::QuickGelu => xs.iter_mut().for_each(|x| *x = Activation::QuickGelu.apply(*x)),
            Activation::Tanh => xs.iter_mut().for_each(|x| *x = x.tanh()),
        }
    }
}

/// a + b, same shapes.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape("add", format!("{:?} + {:?}", a.shape(), b.shape())));
    }
    let out = match (a.storage(), b.storage()) {
        (Storage::Cpu(_), Storage::Cpu(_)) => {
            let (x, y) = (a.cpu_slice()?, b.cpu_slice()?);
            let out: Vec<f32> = x.iter().zip(y).map(|(p, q)| p + q).collect();
            Tensor::from_vec(out, a.shape())?
        }
        _ => super::gpu::add(a, b)?,
    };
    Ok(autograd::record(out, &[a, b], || AddBackward { a: a.clone(), b: b.clone() }))
}

/// Both inputs of a sum get the output's gradient.
struct AddBackward {
    a: Tensor,
    b: Tensor,
}

impl Backward for AddBackward {
    fn name(&self) -> &'static str {
        "add"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.a, &self.b]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok([&self.a, &self.b].map(|t| t.is_tracked().then(|| grad.detach())).to_vec())
    }
}

/// s·x.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    let out = match x.storage() {
        Storage::Cpu(_) => Tensor::from_vec(x.cpu_slice()?.iter().map(|v| v * s).collect(), x.shape())?,
        Storage::Gpu(_) => super::gpu::scale(x, s)?,
    };
    Ok(autograd::record(out, &[x], || ScaleBackward { x: x.clone(), s }))
}

struct ScaleBackward {
    x: Tensor,
    s: f32,
}

impl Backward for ScaleBackward {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(scale(grad, self.s)?)])
    }
}

/// Each row of the last dimension divided by its L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let width = x.last_dim();
    let out = match x.storage() {
        Storage::Cpu(_) => {
            let mut out = x.cpu_slice()?.to_vec();
            par_rows(&mut out, width, |_, row| {
                let norm = row_norm(row);
                row.iter_mut().for_each(|v| *v /= norm);
            });
            Tensor::from_vec(out, x.shape())?
        }
        Storage::Gpu(_) => super::gpu::l2_normalize(x)?,
    };
    Ok(autograd::record(out, &[x], || L2NormalizeBackward { x: x.clone() }))
}

fn row_norm(row: &[f32]) -> f32 {
    (row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt() as f32).max(f32::MIN_POSITIVE)
}

/// y = x/‖x‖: dx = (g − y·⟨y, g⟩)/‖x‖ per row.
struct L2NormalizeBackward {
    x: Tensor,
}

impl Backward for L2NormalizeBackward {
    fn name(&self) -> &'static str {
        "l2_normalize"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (Storage::Cpu(_), Storage::Cpu(_)) = (self.x.storage(), grad.storage()) else {
            return Err(autograd::cpu_only("l2_normalize"));
        };
        let width = self.x.last_dim();
        let (x, g) = (self.x.cpu_slice()?, grad.cpu_slice()?);
        let mut dx = vec![0f32; x.len()];
        par_rows(&mut dx, width, |r, out| {
            let (x, g) = (&x[r * width..][..width], &g[r * width..][..width]);
            let norm = row_norm(x) as f64;
            let y_dot_g: f64 = x.iter().zip(g).map(|(x, g)| *x as f64 / norm * *g as f64).sum();
            for j in 0..width {
                out[j] = ((g[j] as f64 - x[j] as f64 / norm * y_dot_g) / norm) as f32;
            }
        });
        Ok(vec![Some(Tensor::from_vec(dx, self.x.shape())?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{erf64, fd_grad, rand_vec, rel_err, to_f64, weighted_sum};

    #[test]
    fn normalise_and_scale_gradients_match_float64_finite_differences() {
        for (rows, width, seed) in [(1, 1, 1), (3, 7, 2), (4, 64, 3)] {
            let x = rand_vec(rows * width, seed, 1.0);
            let up = rand_vec(rows * width, seed + 1, 1.0);
            let var = Tensor::from_vec(x.clone(), &[rows, width]).unwrap().variable();
            let y = scale(&l2_normalize(&var).unwrap(), 2.5).unwrap();
            let forward64 = |p: &[f64]| -> Vec<f64> {
                p.chunks(width)
                    .flat_map(|row| {
                        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                        row.iter().map(move |v| 2.5 * v / norm)
                    })
                    .collect()
            };
            let grads = crate::autograd::backward_with(&y, &Tensor::from_vec(up.clone(), &[rows, width]).unwrap());
            let want = fd_grad(&to_f64(&x), |p| weighted_sum(&forward64(p), &up));
            let err = rel_err(&grads.unwrap().get(&var).unwrap().to_vec().unwrap(), &want);
            assert!(err < 1e-4, "rows={rows} width={width}: {err}");
        }
    }

    #[test]
    fn activations_match_definitions() {
        for &x in &[-3.1f32, -0.7, 0.3, 1.9] {
            let gelu = 0.5 * x as f64 * (1.0 + erf64(x as f64 / 2f64.sqrt()));
            assert!((Activation::Gelu.apply(x) as f64 - gelu).abs() < 1e-6);
            let q = x as f64 / (1.0 + (-1.702 * x as f64).exp());
            assert!((Activation::QuickGelu.apply(x) as f64 - q).abs() < 1e-6);
        }
    }

    #[test]
    fn l2_normalize_gives_unit_rows() {
        let x = Tensor::from_vec(vec![3.0, 4.0, -1.0, 2.0, 2.0, 1.0], &[2, 3]).unwrap();
        let y = l2_normalize(&x).unwrap().to_vec().unwrap();
        for row in y.chunks(3) {
            let n: f32 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-6);
        }
        assert!((y[0] - 3.0 / 26f32.sqrt()).abs() < 1e-6);
    }
}
