//! Optimisers over adapter parameters (f32 master values, as PyTorch keeps them).

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// An optimiser over named variables. `step` replaces each variable in `params` by a new variable holding
/// its updated values (a parameter the loss did not reach is left as it is); call it with the same parameters,
/// in the same order, every step. A non-finite gradient is an error naming the parameter, and nothing is
/// updated.
pub trait Optimizer {
    fn lr(&self) -> f32;
    fn set_lr(&mut self, lr: f32);
    /// The new values of parameter `index` from its values and gradient.
    fn update(&mut self, index: usize, values: &[f32], grad: Vec<f32>) -> Vec<f32>;

    fn step(&mut self, params: &mut [(String, Tensor)], grads: &Gradients) -> Result<()> {
        self.step_clipped(params, grads, None)
    }

    /// `step` with the gradients scaled down together, when their global L2 norm exceeds `max_norm`, to that
    /// norm (PyTorch's `clip_grad_norm_`).
    fn step_clipped(
        &mut self,
        params: &mut [(String, Tensor)],
        grads: &Gradients,
        max_norm: Option<f32>,
    ) -> Result<()> {
        let mut gathered = Vec::with_capacity(params.len());
        for (name, p) in params.iter() {
            let Some(g) = grads.get(p) else {
                gathered.push(None);
                continue;
            };
            let g = g.to_vec()?;
            if let Some(bad) = g.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid("optimizer", format!("gradient of {name} is {} at element {bad}", g[bad])));
            }
            gathered.push(Some(g));
        }
        let norm = gathered.iter().flatten().flatten().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
        let factor = match max_norm {
            Some(max) if norm > max as f64 => (max as f64 / (norm + 1e-6)) as f32,
            _ => 1.0,
        };
        for (i, ((_, p), g)) in params.iter_mut().zip(gathered).enumerate() {
            let Some(mut g) = g else { continue };
            if factor != 1.0 {
                g.iter_mut().for_each(|v| *v *= factor);
            }
            let next = self.update(i, &p.to_vec()?, g);
            *p = Tensor::from_vec(next, p.shape())?.variable();
        }
        Ok(())
    }
}

/// Which optimiser a training run uses, with its settings (the learning rate comes from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd { momentum: f32, weight_decay: f32 },
    AdamW { weight_decay: f32 },
}

impl OptimizerKind {
    pub fn build(self, lr: f32) -> Box<dyn Optimizer> {
        match self {
            OptimizerKind::Sgd { momentum, weight_decay } => Box::new(Sgd::new(lr, momentum, weight_decay)),
            OptimizerKind::AdamW { weight_decay } => Box::new(AdamW::new(lr, weight_decay)),
        }
    }
}

/// PyTorch's SGD: g ← g + wd·p; with momentum μ, v ← g on the first step, then μ·v + g, and g ← v; p ← p − lr·g.
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    velocity: Vec<Option<Vec<f32>>>,
}

impl Sgd {
    pub fn new(lr: f32, momentum: f32, weight_decay: f32) -> Sgd {
        Sgd { lr, momentum, weight_decay, velocity: Vec::new() }
    }
}

impl Optimizer for Sgd {
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn update(&mut self, index: usize, values: &[f32], mut g: Vec<f32>) -> Vec<f32> {
        if self.velocity.len() <= index {
            self.velocity.resize(index + 1, None);
        }
        if self.weight_decay != 0.0 {
            g.iter_mut().zip(values).for_each(|(g, p)| *g += self.weight_decay * p);
        }
        if self.momentum != 0.0 {
            match &mut self.velocity[index] {
                Some(v) => v.iter_mut().zip(&g).for_each(|(v, g)| *v = self.momentum * *v + g),
                empty => *empty = Some(g.clone()),
            }
            g.copy_from_slice(self.velocity[index].as_ref().unwrap());
        }
        values.iter().zip(&g).map(|(p, g)| p - self.lr * g).collect()
    }
}

/// PyTorch's AdamW: p ← p − lr·wd·p; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
/// p ← p − lr·(m/(1 − β1ᵗ)) / (√(v/(1 − β2ᵗ)) + ε), t counting each parameter's steps.
pub struct AdamW {
    pub lr: f32,
    pub weight_decay: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    state: Vec<Option<Moments>>,
}

/// One parameter's step count and first and second moments.
#[derive(Clone)]
struct Moments {
    t: i32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl AdamW {
    /// PyTorch's defaults but the learning rate and weight decay: β = (0.9, 0.999), ε = 1e-8.
    pub fn new(lr: f32, weight_decay: f32) -> AdamW {
        AdamW { lr, weight_decay, betas: (0.9, 0.999), eps: 1e-8, state: Vec::new() }
    }
}

impl Optimizer for AdamW {
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn update(&mut self, index: usize, values: &[f32], g: Vec<f32>) -> Vec<f32> {
        if self.state.len() <= index {
            self.state.resize(index + 1, None);
        }
        let (b1, b2) = self.betas;
        let Moments { t, m, v } =
            self.state[index].get_or_insert_with(|| Moments { t: 0, m: vec![0.0; g.len()], v: vec![0.0; g.len()] });
        *t += 1;
        let (c1, c2) = (1.0 - b1.powi(*t), 1.0 - b2.powi(*t));
        let mut next = Vec::with_capacity(values.len());
        for (j, (&p, &g)) in values.iter().zip(&g).enumerate() {
            m[j] = b1 * m[j] + (1.0 - b1) * g;
            v[j] = b2 * v[j] + (1.0 - b2) * g * g;
            let decayed = p - self.lr * self.weight_decay * p;
            next.push(decayed - self.lr * (m[j] / c1) / ((v[j] / c2).sqrt() + self.eps));
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on L = Σ c ⊙ p (gradient c), against the update rule written out by hand.
    #[test]
    fn momentum_and_weight_decay_follow_pytorch() {
        let (lr, mu, wd) = (0.1f32, 0.9f32, 0.01f32);
        let p0 = [1.0f32, -2.0, 0.5];
        let c = Tensor::from_vec(vec![0.3, -0.7, 2.0], &[3]).unwrap();
        let mut params = vec![("p".to_string(), Tensor::from_vec(p0.to_vec(), &[3]).unwrap().variable())];
        let mut sgd = Sgd::new(lr, mu, wd);
        let (mut p, mut v) = (p0.map(f64::from), [0f64; 3]);
        for step in 0..2 {
            let y = crate::ops::add(&params[0].1, &c).unwrap();
            let grads = crate::autograd::backward_with(&y, &c).unwrap();
            sgd.step(&mut params, &grads).unwrap();
            for j in 0..3 {
                let g = c.to_vec().unwrap()[j] as f64 + wd as f64 * p[j];
                v[j] = if step == 0 { g } else { mu as f64 * v[j] + g };
                p[j] -= lr as f64 * v[j];
            }
            let got = params[0].1.to_vec().unwrap();
            for j in 0..3 {
                assert!((got[j] as f64 - p[j]).abs() < 1e-6, "step {step} element {j}: {} vs {}", got[j], p[j]);
            }
        }
    }

    #[test]
    fn a_non_finite_gradient_updates_nothing() {
        let p = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap().variable();
        let mut params = vec![("p".to_string(), p.clone())];
        let y = crate::ops::add(&p, &p).unwrap();
        let grads = crate::autograd::backward_with(&y, &Tensor::from_vec(vec![1.0, f32::NAN], &[2]).unwrap()).unwrap();
        let err = Sgd::new(0.1, 0.0, 0.0).step(&mut params, &grads).unwrap_err().to_string();
        assert!(err.contains("gradient of p") && err.contains("element 1"), "{err}");
        assert_eq!(params[0].1.to_vec().unwrap(), vec![1.0, 2.0]);
    }

    /// Three steps on L = Σ c ⊙ p against AdamW's update written out in float64, then clipping: a gradient of
    /// norm 10 clipped to 1 moves SGD by a tenth.
    #[test]
    fn adamw_follows_pytorch_and_clipping_scales_the_gradient() {
        let (lr, wd) = (0.01f32, 0.1f32);
        let c = vec![0.3f32, -0.7, 2.0];
        let g = Tensor::from_vec(c.clone(), &[3]).unwrap();
        let mut params = vec![("p".to_string(), Tensor::from_vec(vec![1.0, -2.0, 0.5], &[3]).unwrap().variable())];
        let mut adam = AdamW::new(lr, wd);
        let (mut p, mut m, mut v) = ([1.0f64, -2.0, 0.5], [0f64; 3], [0f64; 3]);
        for t in 1..=3 {
            let y = crate::ops::add(&params[0].1, &g).unwrap();
            adam.step(&mut params, &crate::autograd::backward_with(&y, &g).unwrap()).unwrap();
            for j in 0..3 {
                let gj = c[j] as f64;
                m[j] = 0.9 * m[j] + 0.1 * gj;
                v[j] = 0.999 * v[j] + 0.001 * gj * gj;
                p[j] -= lr as f64 * wd as f64 * p[j];
                p[j] -= lr as f64 * (m[j] / (1.0 - 0.9f64.powi(t))) / ((v[j] / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8);
            }
            let got = params[0].1.to_vec().unwrap();
            (0..3).for_each(|j| assert!((got[j] as f64 - p[j]).abs() < 1e-6, "step {t} element {j}"));
        }

        let big = Tensor::from_vec(vec![6.0, 8.0], &[2]).unwrap(); // norm 10
        let mut params = vec![("q".to_string(), Tensor::from_vec(vec![0.0, 0.0], &[2]).unwrap().variable())];
        let y = crate::ops::add(&params[0].1, &big).unwrap();
        let grads = crate::autograd::backward_with(&y, &big).unwrap();
        Sgd::new(1.0, 0.0, 0.0).step_clipped(&mut params, &grads, Some(1.0)).unwrap();
        let got = params[0].1.to_vec().unwrap();
        assert!((got[0] + 0.6).abs() < 1e-5 && (got[1] + 0.8).abs() < 1e-5, "{got:?}");
    }
}
