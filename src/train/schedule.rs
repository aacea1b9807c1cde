//! Per-epoch schedules of the reference code: the learning rate (constant warm-up, then cosine, as Dassl's
//! `ConstantWarmupScheduler` over `CosineAnnealingLR`) and the calibration weight λ (constant, or annealed).

use std::f32::consts::PI;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub epochs: usize,
    pub lr: f32,
    /// Epochs at the constant `warmup_lr` before the cosine starts.
    pub warmup_epochs: usize,
    pub warmup_lr: f32,
    /// The target λ.
    pub calib_weight: f32,
    /// λ from λ/100 up (linearly over the first 10% of epochs from 0, then linearly to λ) instead of constant.
    pub anneal: bool,
}

impl Schedule {
    /// The learning rate of epoch `e` (0-based): `warmup_lr` for the warm-up epochs, then
    /// lr·½(1 + cos(π·(e − warm-up + 1)/E)), the cosine stepped once per epoch after the warm-up.
    pub fn lr(&self, epoch: usize) -> f32 {
        if epoch < self.warmup_epochs {
            return self.warmup_lr;
        }
        // The cosine is stepped once per epoch after the warm-up; with no warm-up its first epoch is its start.
        let step = if self.warmup_epochs == 0 { epoch } else { epoch + 1 - self.warmup_epochs };
        self.lr * 0.5 * (1.0 + (PI * step as f32 / self.epochs.max(1) as f32).cos())
    }

    /// λ for epoch `e`: constant, or annealed as the reference code does (initial = λ/100, n = ⌊0.1·E⌋:
    /// initial·e/n for e < n, then initial + (λ − initial)·(e − n)/(E − n)).
    pub fn calib_weight(&self, epoch: usize) -> f32 {
        if !self.anneal {
            return self.calib_weight;
        }
        let initial = self.calib_weight / 100.0;
        let warm = self.epochs / 10;
        if epoch < warm {
            initial * epoch as f32 / warm as f32
        } else {
            initial + (self.calib_weight - initial) * (epoch - warm) as f32 / (self.epochs - warm).max(1) as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper() -> Schedule {
        Schedule { epochs: 10, lr: 0.002, warmup_epochs: 1, warmup_lr: 1e-5, calib_weight: 1.0, anneal: true }
    }

    #[test]
    fn annealed_weight_follows_the_reference_code() {
        // E = 10, λ = 1: 0, 0.01, 0.12, 0.23, … 0.89 (it never reaches λ).
        let s = paper();
        let want = [0.0, 0.01, 0.12, 0.23, 0.34, 0.45, 0.56, 0.67, 0.78, 0.89];
        for (e, w) in want.iter().enumerate() {
            assert!((s.calib_weight(e) - w).abs() < 1e-6, "epoch {e}: {} vs {w}", s.calib_weight(e));
        }
        assert_eq!(Schedule { anneal: false, ..s }.calib_weight(3), 1.0);
    }

    #[test]
    fn learning_rate_warms_up_then_follows_the_cosine() {
        let s = paper();
        assert_eq!(s.lr(0), 1e-5);
        for e in 1..10 {
            let want = 0.002 * 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / 10.0).cos());
            assert!((s.lr(e) as f64 - want).abs() < 1e-9, "epoch {e}");
        }
        let plain = Schedule { warmup_epochs: 0, ..s };
        assert_eq!(plain.lr(0), 0.002);
        assert!(plain.lr(9) < plain.lr(5) && plain.lr(5) < plain.lr(1));
    }
}
