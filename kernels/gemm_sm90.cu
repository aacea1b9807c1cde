// kernels/gemm_sm90.cu — the GEMM of gemm.cu on Hopper's warpgroup tensor-core instructions (sm_90a; pre-Hopper
// GPUs use gemm.cu, which computes the same function; the emulator runs both, through kernels/emu_sm90.h):
//
//   C[m,n] = residual[m,n] + layer_scale[n] · act( norm_m(Σ_k A[m,k]·W[n,k]) + bias[n] )      (see gemm.cu)
//
// Tiling: 128 x BN x 64 block tile, 256 threads = 2 warpgroups; warpgroup g owns rows [64g, 64g+64) and all BN
// columns, issued as wgmma.m64n128k16 (f32 accumulators in registers, both operands read from shared memory).
// Operands go global -> shared by a STAGES-deep cp.async pipeline (16-byte chunks, zero-filled past the edges)
// into the 128-byte-swizzled K-major layout wgmma reads: row r of a 64-wide K tile is 128 bytes at r·128, its
// 16-byte chunk c stored at chunk c ^ (r & 7); tiles are 1024-byte aligned (the swizzle's period). The TMA
// variants load the same layout with the tensor memory accelerator; the persistent variants
// (gemm_persistent_sm90.cu) walk all tiles with one block per SM. Shared helpers: gemm_sm90.cuh.
// Needs K, lda, ldw multiples of 8 and 16-byte aligned A, W (the launcher falls back to gemm.cu otherwise).
//
// Launch: grid (ceil(N/BN), ceil(M/128)), block 256 / 384 / 288, shared bytes per variant
// (Sm90Variant::shared_bytes in src/gpu/ops/gemm.rs).
#include "common.cuh"
#include "hopper.cuh"
#include "gemm_sm90.cuh"

// One k tile of a stage: the warpgroup's 64 rows of A (a_off bytes into the stage) times the NB 128-row blocks of W
// after A's G90_BM rows, as one committed wgmma group.
template <class T, int NB>
DEVI void g90_mma_stage(float (&acc)[NB][64], const char* st, int a_off) {
    unsigned long long da = wgmma_desc_sw128(st + a_off);
    unsigned long long db = wgmma_desc_sw128(st + G90_BM * 128);
    wgmma_fence();
    UNROLL for (int kk = 0; kk < G90_BK / 16; ++kk) {
        // +32 bytes per k16 step inside the swizzled row: the descriptor's address field is in 16-byte units.
        UNROLL for (int j = 0; j < NB; ++j)
            wgmma_m64n128k16<T>(acc[j], da + 2 * kk, db + (unsigned long long)(j * 128 * 128 / 16) + 2 * kk);
    }
    wgmma_commit();
}

template <class T, int BN, int STAGES>
DEVI void g90_body(int M, int N, int K, int lda, int ldw, int ldc, const T* A, const T* W, const GemmEpi<T>& ep,
                   T* C) {
    constexpr int A_BYTES = G90_BM * 128, B_BYTES = BN * 128, STAGE_BYTES = A_BYTES + B_BYTES;
    constexpr int NB = BN / 128;  // wgmma n128 issues per k16 step
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    int bm = blockIdx.y * G90_BM, bn = blockIdx.x * BN;
    int wg = threadIdx.x >> 7;
    float acc[NB][64];
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) acc[j][e] = 0.0f;

    // With 4+ stages one wgmma group stays in flight while the next tile's barrier and loads are issued; the
    // stage a load overwrites is then two tiles back (prefetch distance STAGES-2), whose wgmma has retired.
    constexpr bool INFLIGHT = STAGES >= 4;
    constexpr int DIST = INFLIGHT ? STAGES - 2 : STAGES - 1;
    int ktiles = ceil_div(K, G90_BK);
    for (int s = 0; s < DIST; ++s) {
        if (s < ktiles) {
            load_tile_sw128<T, G90_BM>(smem + s * STAGE_BYTES, A, lda, M, K, bm, s * G90_BK);
            load_tile_sw128<T, BN>(smem + s * STAGE_BYTES + A_BYTES, W, ldw, N, K, bn, s * G90_BK);
        }
        cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<DIST - 1>();  // tile kt has landed (this thread's chunks) ...
        fence_proxy_async();        // ... and is visible to the async proxy ...
        __syncthreads();            // ... for every thread; the wgmma groups of tile kt-DIST+... have retired
        int pre = kt + DIST;
        if (pre < ktiles) {
            char* st = smem + (pre % STAGES) * STAGE_BYTES;
            load_tile_sw128<T, G90_BM>(st, A, lda, M, K, bm, pre * G90_BK);
            load_tile_sw128<T, BN>(st + A_BYTES, W, ldw, N, K, bn, pre * G90_BK);
        }
        cp_async_commit();
        g90_mma_stage<T, NB>(acc, smem + (kt % STAGES) * STAGE_BYTES, wg * 64 * 128);
        if (INFLIGHT) wgmma_wait<1>();  // the previous tile's group has retired; this one runs on
        else wgmma_wait<0>();
    }
    wgmma_wait<0>();
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) wgmma_pin(acc[j][e]);
    cp_async_wait<0>();

    float* tile = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warpgroup is done reading the operand stages
    g90_park<NB>(acc, tile, wg * 64);
    __syncthreads();
    g90_store<T, BN + 8, BN, 256>(tile, threadIdx.x, bm, bn, M, N, ldc, ep, C);
}

// ---------------------------------------------------------------------------------------------------------
// Warp-specialised variant: the tensor memory accelerator (TMA) loads each operand tile straight into the
// swizzled layout and signals an mbarrier; 384 threads = warpgroup 0 (one thread issues the loads) + two
// consumer warpgroups (wgmma). Stage s has a "full" barrier (1 arrival + the tile's bytes) and an "empty"
// barrier (one arrival per consumer warpgroup once its wgmma group reading s has retired).
// ---------------------------------------------------------------------------------------------------------
// LEAN: the producer is one warp after the two consumer warpgroups (288 threads, so two blocks fit an SM's
// registers) instead of a whole leading warpgroup (384 threads).
template <class T, int BN, int STAGES, bool LEAN>
DEVI void g90_tma_body(int M, int N, int K, int ldc, const TmaMap* amap, const TmaMap* wmap, const GemmEpi<T>& ep,
                       T* C) {
    constexpr int A_BYTES = G90_BM * 128, B_BYTES = BN * 128, STAGE_BYTES = A_BYTES + B_BYTES;
    constexpr int NB = BN / 128;
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    u32 full0 = smem_addr(smem + STAGES * STAGE_BYTES), empty0 = full0 + 8 * STAGES;
    int bm = blockIdx.y * G90_BM, bn = blockIdx.x * BN;
    int ktiles = ceil_div(K, G90_BK);
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full0 + 8 * s, 1);
            mbar_init(empty0 + 8 * s, 2);
        }
        fence_mbarrier_init();
    }
    __syncthreads();
    constexpr int CBASE = LEAN ? 0 : 128;  // first consumer thread (a multiple of 128: warpgroups stay aligned)
    int ct = threadIdx.x - CBASE;
    if (LEAN ? threadIdx.x >= 256 : threadIdx.x < 128) {
        if (threadIdx.x == (LEAN ? 256 : 0)) {
            int fill = 0;
            g90_produce_tile<STAGES, A_BYTES, STAGE_BYTES>(fill, ktiles, smem, full0, empty0, amap, wmap, bm, bn);
        }
        return;  // no barrier of the whole block follows
    }
    int cw = ct >> 7;
    float acc[NB][64];
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) acc[j][e] = 0.0f;
    for (int kt = 0; kt < ktiles; ++kt) {
        int s = kt % STAGES;
        mbar_wait(full0 + 8 * s, (kt / STAGES) & 1);
        g90_mma_stage<T, NB>(acc, smem + s * STAGE_BYTES, cw * 64 * 128);
        wgmma_wait<1>();  // tile kt-1's group has retired: its stage may be refilled
        if (kt > 0 && (ct & 127) == 0) mbar_arrive(empty0 + 8 * ((kt - 1) % STAGES));
    }
    wgmma_wait<0>();
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) wgmma_pin(acc[j][e]);
    // The producer has left; the 256 consumer threads synchronise on named barrier 1.
    float* tile = reinterpret_cast<float*>(smem);
    named_barrier_sync(1, 256);  // both consumers are done reading the operand stages
    g90_park<NB>(acc, tile, cw * 64);
    named_barrier_sync(1, 256);
    g90_store<T, BN + 8, BN, 256>(tile, ct, bm, bn, M, N, ldc, ep, C);
}
// Variants: BN x STAGES (n128s3: 97 KiB of shared memory, two blocks per SM, each tile's wgmma retired before
// the next; n128s4: 129 KiB, one block, one wgmma group in flight; n256s4: 193 KiB, one block, in flight).
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s4_bf16(GEMM_PARAMS(bf16_t)) {
    g90_body<bf16_t, 128, 4>(GEMM_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s4_f16(GEMM_PARAMS(f16_t)) {
    g90_body<f16_t, 128, 4>(GEMM_ARGS(f16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s3_bf16(GEMM_PARAMS(bf16_t)) {
    g90_body<bf16_t, 128, 3>(GEMM_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s3_f16(GEMM_PARAMS(f16_t)) {
    g90_body<f16_t, 128, 3>(GEMM_ARGS(f16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n256s4_bf16(GEMM_PARAMS(bf16_t)) {
    g90_body<bf16_t, 256, 4>(GEMM_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n256s4_f16(GEMM_PARAMS(f16_t)) {
    g90_body<f16_t, 256, 4>(GEMM_ARGS(f16_t));
}

// TMA variants (384 threads, one block per SM): n128s5 161 KiB of shared memory, n256s3 145 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n128s5_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_tma_body<bf16_t, 128, 5, false>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n128s5_f16(G90_TMA_PARAMS(f16_t)) {
    g90_tma_body<f16_t, 128, 5, false>(G90_TMA_ARGS(f16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n256s3_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_tma_body<bf16_t, 256, 3, false>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n256s3_f16(G90_TMA_PARAMS(f16_t)) {
    g90_tma_body<f16_t, 256, 3, false>(G90_TMA_ARGS(f16_t));
}
// Lean TMA variant (288 threads, two blocks per SM): n128s3, 97 KiB of shared memory.
extern "C" __global__ void __launch_bounds__(288, 2) gemm_sm90_tmaw_n128s3_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_tma_body<bf16_t, 128, 3, true>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(288, 2) gemm_sm90_tmaw_n128s3_f16(G90_TMA_PARAMS(f16_t)) {
    g90_tma_body<f16_t, 128, 3, true>(G90_TMA_ARGS(f16_t));
}
