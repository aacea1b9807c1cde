//! Fresh adapters, initialised as peft does: LoRA A kaiming-uniform (bound 1/√fan_in) and B zero, so a new
//! adapter leaves the model's output unchanged; a new classification head drawn from a normal of standard
//! deviation 0.02 truncated at two, with a zero bias. Reproducible from a seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::models::{Model, Tower};
use crate::nn::LoraSite;
use crate::tensor::Tensor;

use super::peft::{LoraConfig, PEFT_PREFIX};

/// The LoRA sites a peft `target_modules` entry names.
pub fn target_site(name: &str) -> Option<LoraSite> {
    Some(match name {
        "q_proj" | "query" => LoraSite::Query,
        "k_proj" | "key" => LoraSite::Key,
        "v_proj" | "value" => LoraSite::Value,
        "out_proj" | "o_proj" => LoraSite::Out,
        "fc1" => LoraSite::Fc1,
        "fc2" => LoraSite::Fc2,
        _ => return None,
    })
}

/// A new adapter for every block of every tower of `model` (CLIP: both, as peft matches module names in
/// either) at each of `config.target_modules`, named as peft names them (`with_head`: for the model class
/// with a classification head).
pub fn fresh_lora(model: &mut Model, config: &LoraConfig, with_head: bool, seed: u64) -> Result<Vec<(String, Tensor)>> {
    let sites = config
        .target_modules
        .iter()
        .map(|t| target_site(t).ok_or_else(|| Error::invalid("--lora-targets", format!("unknown module {t}"))))
        .collect::<Result<Vec<_>>>()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = Vec::new();
    for tower in [Tower::Vision, Tower::Text] {
        let Some(encoder) = model.encoder_mut(tower) else { continue };
        let layers = encoder.config().layers;
        let dims: Vec<(usize, usize)> = sites.iter().map(|&s| encoder.site_dims(s)).collect();
        for layer in 0..layers {
            for (&site, &(fan_in, out)) in sites.iter().zip(&dims) {
                let module = model.peft_module(tower, layer, site, with_head)?;
                let bound = 1.0 / (fan_in as f32).sqrt();
                let a: Vec<f32> = (0..config.r * fan_in).map(|_| rng.random_range(-bound..bound)).collect();
                tensors
                    .push((format!("{PEFT_PREFIX}{module}.lora_A.weight"), Tensor::from_vec(a, &[config.r, fan_in])?));
                let b = vec![0f32; out * config.r];
                tensors.push((format!("{PEFT_PREFIX}{module}.lora_B.weight"), Tensor::from_vec(b, &[out, config.r])?));
            }
        }
    }
    Ok(tensors)
}

/// A new classification head for `labels` classes over `in_features` pooled features, named as peft saves
/// a head in `modules_to_save`.
pub fn fresh_classifier(in_features: usize, labels: usize, seed: u64) -> Result<Vec<(String, Tensor)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_C1A5);
    let weight: Vec<f32> = (0..labels * in_features).map(|_| 0.02 * truncated_normal(&mut rng)).collect();
    Ok(vec![
        (format!("{PEFT_PREFIX}classifier.bias"), Tensor::from_vec(vec![0.0; labels], &[labels])?),
        (format!("{PEFT_PREFIX}classifier.weight"), Tensor::from_vec(weight, &[labels, in_features])?),
    ])
}

/// A standard normal draw conditioned on |x| ≤ 2 (redrawn outside).
fn truncated_normal(rng: &mut ChaCha8Rng) -> f32 {
    loop {
        let x = standard_normal(rng);
        if x.abs() <= 2.0 {
            return x;
        }
    }
}

/// A standard normal draw (Box–Muller).
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random::<f64>());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}
