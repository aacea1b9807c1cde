//! Optimisers over adapter parameters (f32 master values, as PyTorch keeps them).

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

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

    /// One step: each named variable in `params` is replaced by a new variable holding its updated values (a
    /// parameter the loss did not reach is left as it is). Call with the same parameters, in the same order,
    /// every step. A non-finite gradient is an error naming the parameter, and nothing is updated.
    pub fn step(&mut self, params: &mut [(String, Tensor)], grads: &Gradients) -> Result<()> {
        self.velocity.resize(params.len(), None);
        let mut updates = Vec::with_capacity(params.len());
        for (name, p) in params.iter() {
            let Some(g) = grads.get(p) else {
                updates.push(None);
                continue;
            };
            let g = g.to_vec()?;
            if let Some(bad) = g.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid("sgd", format!("gradient of {name} is {} at element {bad}", g[bad])));
            }
            updates.push(Some(g));
        }
        for (i, ((_, p), g)) in params.iter_mut().zip(updates).enumerate() {
            let Some(mut g) = g else { continue };
            let values = p.to_vec()?;
            if self.weight_decay != 0.0 {
                g.iter_mut().zip(&values).for_each(|(g, p)| *g += self.weight_decay * p);
            }
            if self.momentum != 0.0 {
                match &mut self.velocity[i] {
                    Some(v) => v.iter_mut().zip(&g).for_each(|(v, g)| *v = self.momentum * *v + g),
                    empty => *empty = Some(g.clone()),
                }
                g.copy_from_slice(self.velocity[i].as_ref().unwrap());
            }
            let next: Vec<f32> = values.iter().zip(&g).map(|(p, g)| p - self.lr * g).collect();
            *p = Tensor::from_vec(next, p.shape())?.variable();
        }
        Ok(())
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
}
