//! Seeds derived from seeds: SplitMix64's finaliser, a bijection on u64 whose outputs for neighbouring inputs
//! look independent. LoRA dropout masks and the active-learning runner's per-round seeds are drawn through it.

/// SplitMix64's output function applied to `z`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The golden-ratio increment SplitMix64 steps by, to spread consecutive counters before `mix`.
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
