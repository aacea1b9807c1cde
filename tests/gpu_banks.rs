//! The emulator's shared-memory bank model (kernels/emu_banks.h): proven on accesses whose bank behaviour is known
//! (kernels/bank_probe.cu), then held against the kernels whose shared accesses were laid out to avoid conflicts.
#![cfg(feature = "cuda-emu")]

use cpeal::gpu::emu::{count_banks, BankSite};
use cpeal::gpu::{selftest, DType, GpuDevice, KernelArgs, LaunchConfig};

fn table(sites: &[BankSite]) -> String {
    sites
        .iter()
        .map(|s| {
            format!(
                "{} {} {}B {}: {} instr, {} wavefronts, ideal {}, divergent {}\n",
                s.kernel,
                s.site,
                s.bytes,
                if s.store { "st" } else { "ld" },
                s.instructions,
                s.wavefronts,
                s.ideal,
                s.divergent
            )
        })
        .collect()
}

#[test]
fn the_bank_model_counts_known_patterns() {
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let out = selftest::poisoned(&dev, DType::F32, 32).unwrap();
    let ((), sites) = count_banks(|| {
        let mut args = KernelArgs::new();
        args.buf(&out); // float* out
        let cfg = LaunchConfig { grid: (1, 1, 1), block: (32, 1, 1), shared_bytes: 8192 };
        // SAFETY: (float* out): out holds 32 floats; the kernel uses 8 KiB of shared memory.
        unsafe { dev.launch("probe_banks_f32", cfg, &mut args) }.unwrap();
    });
    let mut sites: Vec<_> = sites.into_iter().filter(|s| s.site.starts_with("bank_probe.cu:")).collect();
    sites.sort_by_key(|s| s.site.rsplit(':').next().and_then(|l| l.parse::<u32>().ok()));
    let got: Vec<(u32, bool, u64, u64)> = sites.iter().map(|s| (s.bytes, s.store, s.wavefronts, s.ideal)).collect();
    let want = vec![
        (4, false, 1, 1),   // consecutive words
        (4, false, 32, 1),  // every lane in bank 0
        (4, false, 1, 1),   // one word for all lanes
        (16, false, 8, 4),  // lanes l and l + 4 of each quarter-warp share banks
        (16, false, 4, 4),  // consecutive 16-byte vectors
        (8, false, 4, 2),   // lanes l and l + 8 of each half-warp share banks
        (4, true, 1, 1),    // stride 33 words
        (16, false, 16, 4), // ldmatrix: 4 rows of each 8 in the same banks
    ];
    assert_eq!(got, want, "\n{}", table(&sites));
    assert!(sites.iter().all(|s| s.instructions == 1 && s.divergent == 0), "\n{}", table(&sites));
}

/// The sites of `sites` in `files` (file names) that take more wavefronts than their bytes need, or diverged.
fn conflicted<'a>(sites: &'a [BankSite], files: &[&str]) -> Vec<&'a BankSite> {
    let ours = |s: &&BankSite| files.iter().any(|f| s.site.starts_with(&format!("{f}:")));
    sites.iter().filter(ours).filter(|s| s.wavefronts != s.ideal || s.divergent > 0).collect()
}

/// bf16 operands of an m x n x k GEMM on the emulator: A, W, bias, and C poisoned.
fn gemm_operands(dev: &GpuDevice, m: usize, n: usize, k: usize) -> [cpeal::gpu::GpuBuffer; 4] {
    [
        dev.upload(&vec![0.5f32; m * k], DType::Bf16).unwrap(),
        dev.upload(&vec![0.25f32; n * k], DType::Bf16).unwrap(),
        dev.upload(&vec![0.1f32; n], DType::Bf16).unwrap(),
        selftest::poisoned(dev, DType::Bf16, m * n).unwrap(),
    ]
}

/// Every Hopper GEMM on whole tiles (M, N multiples of every tile): the epilogue's park (8-byte stores) and walk
/// (16-byte loads, halves swizzled by g90_half_swap), and the cp.async tile loads of the variants without TMA,
/// take the fewest wavefronts their bytes allow. Unswizzled, the walk took twice as many.
#[test]
fn hopper_gemm_epilogues_and_tile_loads_are_free_of_bank_conflicts() {
    use cpeal::gpu::ops::gemm::{Activation, Gemm, GemmKernel, SM90_VARIANTS};
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let (m, n, k) = (256, 512, 64);
    let [a, w, b, c] = gemm_operands(&dev, m, n, k);
    for variant in SM90_VARIANTS {
        let gemm = Gemm::new(m, n, k, &a, &w, &c).bias(&b).act(Activation::Gelu).kernel(GemmKernel::Sm90(variant));
        let ((), sites) = count_banks(|| gemm.launch(&dev).unwrap());
        let files = ["gemm_sm90.cuh", "gemm_persistent_sm90.cu", "gemm_sm90.cu", "hopper.cuh"];
        let epilogue =
            |store: bool| sites.iter().any(|s| s.store == store && s.instructions > 0 && s.site.contains("gemm_"));
        assert!(epilogue(true) && epilogue(false), "{}: no park or walk counted\n{}", variant.label(), table(&sites));
        assert!(conflicted(&sites, &files).is_empty(), "{}\n{}", variant.label(), table(&sites));
    }
}

/// Every attention kernel of head dim 64, and the tiled kernel of head dims 80, 96 and 128: ldmatrix reads of Q, K
/// and V (rows padded by 8 elements) and the wgmma kernel's swizzled tile loads are conflict-free; so is the cp.async
/// fill at head dims 64 and 128. At 80 and 96 a padded row (88, 104 elements) puts a quarter-warp's 8 chunks across
/// rows whose banks overlap: the fill takes 1.6× and 1.33× the wavefronts, left as is (a small part of the kernel;
/// the ViT-B, CLIP and DINOv2 models cpeal benchmarks all have head dim 64).
#[test]
fn attention_shared_accesses_are_free_of_bank_conflicts() {
    use cpeal::gpu::ops::attention::{Attention, AttentionKernel};
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let runs = AttentionKernel::ALL.iter().map(|&k| (64, k)).chain([80, 96, 128].map(|d| (d, AttentionKernel::Tiled)));
    for (d, kernel) in runs {
        let (b, h, t) = (1, 2, 192);
        let x = dev.upload(&vec![0.5f32; b * t * h * d], DType::Bf16).unwrap();
        let o = selftest::poisoned(&dev, DType::Bf16, b * t * h * d).unwrap();
        let att = Attention::new(b, h, t, d, &x, &x, &x, &o).kernel(kernel);
        let ((), sites) = count_banks(|| att.launch(&dev).unwrap());
        assert!(sites.iter().any(|s| s.instructions > 0), "{kernel:?} d{d}: nothing counted");
        let bad = conflicted(&sites, &["attention.cu", "attention_sm90.cu", "hopper.cuh"]);
        assert!(bad.iter().all(|s| s.store && (d == 80 || d == 96)), "{kernel:?} d{d}\n{}", table(&sites));
    }
}

/// The portable GEMM (gemm.cu): its cp.async fill (2 rows × 4 chunks per quarter-warp) and
/// ldmatrix reads (8 rows per matrix), with chunks swizzled by gemm_chunk. Rows padded to 40 elements, as before,
/// served the reads but made the fill take twice the wavefronts.
#[test]
fn the_portable_gemm_fills_and_reads_its_tiles_free_of_bank_conflicts() {
    use cpeal::gpu::ops::gemm::{Gemm, GemmKernel};
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let (m, n, k) = (256, 256, 64);
    let [a, w, _, c] = gemm_operands(&dev, m, n, k);
    let ((), sites) = count_banks(|| Gemm::new(m, n, k, &a, &w, &c).kernel(GemmKernel::Sm80).launch(&dev).unwrap());
    let kinds =
        |store: bool| sites.iter().any(|s| s.site.starts_with("gemm.cu:") && s.store == store && s.instructions > 0);
    assert!(kinds(true) && kinds(false), "no fill or no read counted\n{}", table(&sites));
    assert!(conflicted(&sites, &["gemm.cu"]).is_empty(), "{}", table(&sites));
}
