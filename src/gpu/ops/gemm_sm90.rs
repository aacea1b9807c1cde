//! The Hopper GEMM variants (`kernels/gemm_sm90.cu`, `kernels/gemm_persistent_sm90.cu`) and the automatic
//! choice among them, per [`GemmRole`]: the shape of ViT-B/16's GEMM a GEMM resembles.

use super::gemm::Activation;
use crate::error::Result;
use crate::gpu::DType;

/// Rows of a consumer warpgroup's tile (G90_BM).
const G90_BM: usize = 128;

/// How a `gemm_sm90.cu` kernel feeds its wgmma.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm90Feed {
    /// cp.async from every thread (256 threads).
    CpAsync,
    /// The tensor memory accelerator, driven by one thread of a producer warpgroup that idles otherwise (384).
    Tma,
    /// TMA from one producer warp after the consumers (288 threads, two blocks per SM).
    TmaLean,
    /// Persistent ping-pong: one block per SM walks the tiles; a producer warpgroup feeds two consumer
    /// warpgroups that take alternate 128 x 128 tiles, one's epilogue under the other's main loop (384).
    PingPong,
    /// The same with the consumers' main loops taking turns on the tensor cores (named barriers).
    PingPongOrdered,
    /// Persistent cooperative: 256 x 128 block tiles (128 x 256 when `bn` is 256), both consumer warpgroups on
    /// each (sharing its W tile).
    Cooperative,
}

/// The operand a cluster of two blocks of a persistent kernel shares by TMA multicast, each block loading half of
/// it into both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multicast {
    /// No clusters.
    None,
    /// A's rows: the blocks take the two column halves of a tile twice as wide (`mc`).
    A,
    /// W's rows: the blocks take the two row halves of a tile twice as tall (`mw`).
    W,
}

/// A `gemm_sm90.cu` kernel: block tile 128 x `bn` (per consumer warpgroup for `PingPong`), a `stages`-deep
/// operand pipeline, fed as `feed` says; persistent kernels may run in clusters of two blocks (`multicast`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm90Variant {
    pub bn: usize,
    pub stages: usize,
    pub feed: Sm90Feed,
    pub multicast: Multicast,
}

impl Sm90Variant {
    const fn new(bn: usize, stages: usize, feed: Sm90Feed) -> Self {
        Sm90Variant { bn, stages, feed, multicast: Multicast::None }
    }

    const fn in_clusters(self, shared: Multicast) -> Self {
        Sm90Variant { multicast: shared, ..self }
    }

    /// Whether the kernel runs in clusters of two blocks.
    pub(super) fn clustered(&self) -> bool {
        self.multicast != Multicast::None
    }

    /// `n128s3`, `tma-n128s5`, `tmaw-n128s3`, `pp-n128s5`, `ppo-n128s5`, `coop-n128s4`, `coop-n256s4`, and
    /// `ppomc-n128s5`, `coopmc-n128s4`, `coopmw-n256s4` in clusters: the kernel name's middle and the
    /// `CPEAL_GEMM_SM90` value.
    pub fn label(&self) -> String {
        let feed = match self.feed {
            Sm90Feed::CpAsync => "",
            Sm90Feed::Tma => "tma",
            Sm90Feed::TmaLean => "tmaw",
            Sm90Feed::PingPong => "pp",
            Sm90Feed::PingPongOrdered => "ppo",
            Sm90Feed::Cooperative => "coop",
        };
        let tile = format!("n{}s{}", self.bn, self.stages);
        match (feed, self.multicast) {
            ("", _) => tile,
            (feed, Multicast::None) => format!("{feed}-{tile}"),
            (feed, Multicast::A) => format!("{feed}mc-{tile}"),
            (feed, Multicast::W) => format!("{feed}mw-{tile}"),
        }
    }

    pub(super) fn kernel_name(&self, dt: DType) -> String {
        format!("gemm_sm90_{}_{}", self.label().replace('-', "_"), dt.suffix())
    }

    pub(super) fn threads(&self) -> u32 {
        match self.feed {
            Sm90Feed::CpAsync => 256,
            Sm90Feed::TmaLean => 288,
            _ => 384,
        }
    }

    pub(super) fn uses_tma(&self) -> bool {
        self.feed != Sm90Feed::CpAsync
    }

    /// Rows of a block tile: 256 for the cooperative kernels on 128 columns (a 128-row tile per consumer), else
    /// 128 (the cooperative kernel on 256 columns: 64 rows per consumer).
    fn block_rows(&self) -> usize {
        if self.feed == Sm90Feed::Cooperative && self.bn == 128 {
            2 * G90_BM
        } else {
            G90_BM
        }
    }

    /// Rows of one consumer warpgroup's tile in the persistent kernels (its epilogue buffer's rows).
    fn consumer_rows(&self) -> usize {
        if self.feed == Sm90Feed::Cooperative {
            self.block_rows() / 2
        } else {
            G90_BM
        }
    }

    /// Rows of A's TMA boxes: half a block tile when a cluster shares A (each block loads one half), else 128.
    pub(super) fn a_box_rows(&self) -> usize {
        if self.multicast == Multicast::A {
            self.block_rows() / 2
        } else {
            G90_BM
        }
    }

    /// Rows of W's TMA boxes: half the W tile when a cluster shares W, else the whole tile.
    pub(super) fn w_box_rows(&self) -> usize {
        if self.multicast == Multicast::W {
            self.bn / 2
        } else {
            self.bn
        }
    }

    /// Operand stages, 1 KiB to align the first tile to the swizzle period, the TMA variants' two barriers per
    /// stage, and the persistent consumers' epilogue buffers (a consumer's rows x (CW + 8) f32 each; CW = 32
    /// columns per chunk, 16 for the cooperative kernel on 128 columns).
    pub(super) fn shared_bytes(&self) -> u32 {
        let stages = (self.block_rows() + self.bn) * 128 * self.stages + 1024;
        let barriers = if self.uses_tma() { 16 * self.stages } else { 0 };
        let park = if self.persistent() { 2 * self.consumer_rows() * (self.store_cols() + 8) * 4 } else { 0 };
        (stages + barriers + park) as u32
    }

    /// Grid for an m x n output: one block per tile, or for the persistent kernels one per SM (at most one per
    /// tile); in clusters, a cluster of two blocks per pair of column (A shared) or row (W shared) tiles (the
    /// launch caps it at the clusters that fit at once).
    pub(super) fn grid(&self, m: usize, n: usize, sm_count: u32) -> (usize, usize) {
        let (tiles_n, tiles_m) = (n.div_ceil(self.bn), m.div_ceil(self.block_rows()));
        if self.multicast == Multicast::A {
            (2 * tiles_n.div_ceil(2) * tiles_m, 1)
        } else if self.multicast == Multicast::W {
            (2 * tiles_m.div_ceil(2) * tiles_n, 1)
        } else if self.persistent() {
            ((tiles_n * tiles_m).min(sm_count as usize), 1)
        } else {
            (tiles_n, tiles_m)
        }
    }

    /// Columns one `g90_store` call covers: the window of the row statistics the epilogue writes
    /// (`Gemm::row_partials`), and for the persistent kernels the columns parked per epilogue chunk.
    pub(super) fn store_cols(&self) -> usize {
        match self.feed {
            Sm90Feed::PingPong | Sm90Feed::PingPongOrdered => 32,
            Sm90Feed::Cooperative if self.bn == 128 => 16,
            Sm90Feed::Cooperative => 32,
            _ => self.bn,
        }
    }

    pub(super) fn persistent(&self) -> bool {
        matches!(self.feed, Sm90Feed::PingPong | Sm90Feed::PingPongOrdered | Sm90Feed::Cooperative)
    }
}

/// The variants compiled in `gemm_sm90.cu` and `gemm_persistent_sm90.cu` (the persistent ones).
pub const SM90_VARIANTS: [Sm90Variant; 13] = [
    Sm90Variant::new(128, 3, Sm90Feed::CpAsync),
    Sm90Variant::new(128, 4, Sm90Feed::CpAsync),
    Sm90Variant::new(256, 4, Sm90Feed::CpAsync),
    Sm90Variant::new(128, 5, Sm90Feed::Tma),
    Sm90Variant::new(256, 3, Sm90Feed::Tma),
    Sm90Variant::new(128, 3, Sm90Feed::TmaLean),
    Sm90Variant::new(128, 5, Sm90Feed::PingPong),
    Sm90Variant::new(128, 5, Sm90Feed::PingPongOrdered),
    Sm90Variant::new(128, 4, Sm90Feed::Cooperative),
    Sm90Variant::new(256, 4, Sm90Feed::Cooperative),
    Sm90Variant::new(128, 5, Sm90Feed::PingPongOrdered).in_clusters(Multicast::A),
    Sm90Variant::new(128, 4, Sm90Feed::Cooperative).in_clusters(Multicast::A),
    Sm90Variant::new(256, 4, Sm90Feed::Cooperative).in_clusters(Multicast::W),
];

/// Which of ViT-B/16's four GEMMs a GEMM's shape resembles; each may take its own Hopper variant:
/// `fc2` for a long K (≥ 2048), else `fc1` with an activation, `qkv` for a wide output (N > K), else `proj`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmRole {
    Qkv,
    Proj,
    Fc1,
    Fc2,
}

impl GemmRole {
    pub const ALL: [GemmRole; 4] = [GemmRole::Qkv, GemmRole::Proj, GemmRole::Fc1, GemmRole::Fc2];

    pub fn of(n: usize, k: usize, act: Activation) -> Self {
        if k >= 2048 {
            GemmRole::Fc2
        } else if act != Activation::None {
            GemmRole::Fc1
        } else if n > k {
            GemmRole::Qkv
        } else {
            GemmRole::Proj
        }
    }

    /// The name in `CPEAL_GEMM_SM90`'s per-role form and in bench-kernels' rows.
    pub fn label(self) -> &'static str {
        match self {
            GemmRole::Qkv => "qkv",
            GemmRole::Proj => "proj",
            GemmRole::Fc1 => "fc1",
            GemmRole::Fc2 => "fc2",
        }
    }
}

/// A Hopper variant per role, in `GemmRole::ALL` order (None: `gemm.cu`).
type PerRole<T> = [T; 4];

/// What `CPEAL_GEMM_SM90` forces per role: None where it leaves the choice, Some(None) for `gemm.cu` (`off`),
/// Some(Some(v)) for a variant.
type Sm90Setting = PerRole<Option<Option<Sm90Variant>>>;

const TMA_LEAN: Option<Sm90Variant> = Some(Sm90Variant::new(128, 3, Sm90Feed::TmaLean));
const TMA_N128S5: Option<Sm90Variant> = Some(Sm90Variant::new(128, 5, Sm90Feed::Tma));

/// What `Auto` runs per role on an H100, measured (bench/results/gpu-check-*.md and gpu-notes-2026-11-25.md,
/// ViT-B/16 shapes at batch 64 and 256): the lean TMA kernel (two blocks per SM) at K = 768 (qkv 460–481
/// TFLOP/s, fc1 351–385, proj 350–455); on long K (fc2, K = 3072) the five-stage TMA kernel (521–522).
const AUTO_SM90: PerRole<Option<Sm90Variant>> = [TMA_LEAN, TMA_LEAN, TMA_LEAN, TMA_N128S5];

/// The Hopper variant `Auto` picks for a GEMM of `role`, or None for `gemm.cu`. `CPEAL_GEMM_SM90` overrides it
/// (benchmarks; on the emulator too, which otherwise keeps `gemm.cu`): a variant's label (or `off`: `gemm.cu`)
/// for every role, or per role, `qkv:<label>,fc2:<label>` (roles not named keep the automatic choice).
pub(super) fn auto_sm90(role: GemmRole, emu: bool) -> Result<Option<Sm90Variant>> {
    match forced_sm90()?.and_then(|per_role| per_role[role as usize]) {
        Some(forced) => Ok(forced),
        None if emu => Ok(None),
        None => Ok(AUTO_SM90[role as usize]),
    }
}

/// `CPEAL_GEMM_SM90`, read once: None when unset.
fn forced_sm90() -> Result<Option<Sm90Setting>> {
    static FORCED: std::sync::OnceLock<std::result::Result<Option<Sm90Setting>, String>> = std::sync::OnceLock::new();
    super::forced_setting(&FORCED, "CPEAL_GEMM_SM90", parse_sm90_setting)
}

/// `CPEAL_GEMM_SM90`'s value: `<label>` or `off` for every role, or `role:<label>,…` for some.
fn parse_sm90_setting(value: &str) -> std::result::Result<Sm90Setting, String> {
    let variant = |label: &str| -> std::result::Result<Option<Sm90Variant>, String> {
        if label == "off" {
            return Ok(None);
        }
        SM90_VARIANTS.iter().find(|v| v.label() == label).map(|v| Some(*v)).ok_or_else(|| {
            let labels: Vec<String> = SM90_VARIANTS.iter().map(|v| v.label()).collect();
            format!("unknown variant `{label}`; one of off, {}", labels.join(", "))
        })
    };
    if !value.contains(':') {
        return Ok([Some(variant(value)?); 4]);
    }
    let mut forced = [None; 4];
    for part in value.split(',') {
        let (role, label) = part.split_once(':').ok_or(format!("`{part}` is not `role:label`"))?;
        let Some(role) = GemmRole::ALL.into_iter().find(|r| r.label() == role) else {
            return Err(format!("unknown role `{role}` in `{part}`; one of qkv, proj, fc1, fc2"));
        };
        forced[role as usize] = Some(variant(label)?);
    }
    Ok(forced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roles_of_the_models_gemms() {
        use Activation::{Gelu, None as Plain, QuickGelu};
        // ViT-B/16 and DINOv2-S/14 (hidden 768 / 384, MLP 4x), CLIP's quick-GELU MLP, a classifier head.
        let cases = [
            ((2304, 768, Plain), GemmRole::Qkv),
            ((768, 768, Plain), GemmRole::Proj),
            ((3072, 768, Gelu), GemmRole::Fc1),
            ((768, 3072, Plain), GemmRole::Fc2),
            ((1152, 384, Plain), GemmRole::Qkv),
            ((384, 1536, Plain), GemmRole::Proj),
            ((2048, 512, QuickGelu), GemmRole::Fc1),
            ((1000, 768, Plain), GemmRole::Qkv),
        ];
        for ((n, k, act), role) in cases {
            assert_eq!(GemmRole::of(n, k, act), role, "{n} x {k} with {act:?}");
        }
    }

    #[test]
    fn a_setting_forces_every_role_or_the_roles_it_names() {
        let ppo = SM90_VARIANTS.iter().copied().find(|v| v.label() == "ppo-n128s5");
        assert!(ppo.is_some());
        assert_eq!(parse_sm90_setting("ppo-n128s5").unwrap(), [Some(ppo); 4]);
        assert_eq!(parse_sm90_setting("off").unwrap(), [Some(None); 4]);
        let per_role = parse_sm90_setting("fc1:ppo-n128s5,qkv:off").unwrap();
        assert_eq!(per_role, [Some(None), None, Some(ppo), None]);
    }

    #[test]
    fn a_bad_setting_names_the_part_at_fault() {
        for (value, says) in [
            ("ppp-n128s5", "unknown variant `ppp-n128s5`"),
            ("qkv:ppo-n128s5,mlp:off", "unknown role `mlp`"),
            ("qkv:ppo-n128s5,fc2", "`fc2` is not `role:label`"),
            ("fc1:tmaw", "unknown variant `tmaw`"),
        ] {
            let err = parse_sm90_setting(value).unwrap_err();
            assert!(err.contains(says), "{value}: {err}");
        }
    }
}
