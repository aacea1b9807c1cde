// kernels/sync_probe_sm90.cu — proves the emulator's Hopper model (emu_sm90.h) the way sync_probe.cu proves the
// rest: out[64 x 128] = A[64 x K] · W[128 x K]ᵀ (f32) through a two-stage TMA ring into one consumer
// warpgroup's wgmma, with `mode` breaking it the ways such pipelines break:
//   0  correct;
//   1  the consumer reads a stage without waiting on its full barrier;
//   2  the consumer releases a stage before the wgmma reading it has retired;
//   3  the accumulators are stored without wgmma.wait_group 0;
//   4  the mbarriers are never initialised.
// On a GPU modes 1-4 are races or undefined behaviour; under emu each fails the launch (tests/gpu_emu_sm90.rs).
// Launch: grid 1, block 160 (warpgroup 0 consumes, warp 4 produces), shared 2·(8 + 16) KiB + 1 KiB + 32 bytes;
// K a multiple of 64; amap boxes 64 rows, wmap boxes 128 rows. ptxas warns (C7518) that the mode branches
// serialise its wgmma: a probe of semantics, not of speed.
#include "common.cuh"
#include "hopper.cuh"

extern "C" __global__ void __launch_bounds__(160) probe_wgmma_ring_bf16(int K, const __grid_constant__ TmaMap amap,
        const __grid_constant__ TmaMap wmap, float* out, int mode) {
    constexpr int A_BYTES = 64 * 128, STAGE_BYTES = A_BYTES + 128 * 128;
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    u32 full0 = smem_addr(smem + 2 * STAGE_BYTES), empty0 = full0 + 16;
    int ktiles = K / 64;
    if (threadIdx.x == 0 && mode != 4) {
        for (int s = 0; s < 2; ++s) {
            mbar_init(full0 + 8 * s, 1);
            mbar_init(empty0 + 8 * s, 1);
        }
        fence_mbarrier_init();
    }
    __syncthreads();
    if (threadIdx.x >= 128) {
        if (threadIdx.x == 128) {
            for (int kt = 0; kt < ktiles; ++kt) {
                int s = kt & 1;
                if (kt >= 2) mbar_wait(empty0 + 8 * s, ((kt >> 1) - 1) & 1);
                u32 full = full0 + 8 * s, dst = smem_addr(smem + s * STAGE_BYTES);
                mbar_expect_tx(full, STAGE_BYTES);
                tma_load_2d(dst, &amap, kt * 64, 0, full);
                tma_load_2d(dst + A_BYTES, &wmap, kt * 64, 0, full);
            }
        }
        return;
    }
    float acc[64];
    UNROLL for (int e = 0; e < 64; ++e) acc[e] = 0.0f;
    for (int kt = 0; kt < ktiles; ++kt) {
        int s = kt & 1;
        if (mode != 1) mbar_wait(full0 + 8 * s, (kt >> 1) & 1);
        const char* st = smem + s * STAGE_BYTES;
        unsigned long long da = wgmma_desc_sw128(st), db = wgmma_desc_sw128(st + A_BYTES);
        wgmma_fence();
        UNROLL for (int kk = 0; kk < 4; ++kk) wgmma_m64n128k16<bf16_t>(acc, da + 2 * kk, db + 2 * kk);
        wgmma_commit();
        if (mode == 2 && threadIdx.x == 0) mbar_arrive(empty0 + 8 * s);  // this stage, its group still in flight
        wgmma_wait<1>();  // the previous k tile's group has retired: its stage may be refilled
        if (mode != 2 && kt > 0 && threadIdx.x == 0) mbar_arrive(empty0 + 8 * (s ^ 1));
    }
    if (mode != 3) wgmma_wait<0>();
    UNROLL for (int e = 0; e < 64; ++e) wgmma_pin(acc[e]);
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    UNROLL for (int q = 0; q < 16; ++q) UNROLL for (int h = 0; h < 2; ++h) UNROLL for (int e = 0; e < 2; ++e)
        out[(16 * warp + g + 8 * h) * 128 + 8 * q + 2 * t + e] = acc[4 * q + 2 * h + e];
}

// The thread block cluster model: a cluster of 2 blocks; block r computes out[r] = A[64 x K] · W[128r .. 128r+127]ᵀ
// through a two-stage ring whose A tile each block loads one half of (32 rows) and multicasts to both, so a stage
// may be refilled only once the consumers of both blocks have released it (empty barriers count 2 arrivals: each
// consumer arrives at its own block's and, by mapa, at the other's). `mode`:
//   0  correct;
//   1  no cluster barrier after the mbarriers' initialisation (the other block may arrive at or copy into
//      barriers not yet initialised);
//   2  the consumers release only their own block's stage (empty barriers count 1): the other block's multicast
//      then lands on a stage this block's wgmma still reads;
//   3  no cluster barrier before the blocks exit (an arrival reaches a block that has left).
// Launch: grid 2 (one cluster), block 160, shared as probe_wgmma_ring_bf16; amap boxes 32 rows, wmap 128 rows.
extern "C" __global__ void __launch_bounds__(160) __cluster_dims__(2, 1, 1) probe_cluster_multicast_bf16(int K,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, float* out, int mode) {
    constexpr int A_BYTES = 64 * 128, STAGE_BYTES = A_BYTES + 128 * 128;
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    u32 full0 = smem_addr(smem + 2 * STAGE_BYTES), empty0 = full0 + 16;
    u32 rank = cluster_ctarank(), other = rank ^ 1;
    int ktiles = K / 64;
    if (threadIdx.x == 0) {
        for (int s = 0; s < 2; ++s) {
            mbar_init(full0 + 8 * s, 1);
            mbar_init(empty0 + 8 * s, mode == 2 ? 1 : 2);
        }
        fence_mbarrier_init();
    }
    __syncthreads();
    if (mode != 1) cluster_sync();
    if (threadIdx.x >= 128) {
        if (threadIdx.x == 128) {
            for (int kt = 0; kt < ktiles; ++kt) {
                int s = kt & 1;
                if (kt >= 2) mbar_wait(empty0 + 8 * s, ((kt >> 1) - 1) & 1);
                u32 full = full0 + 8 * s, dst = smem_addr(smem + s * STAGE_BYTES);
                mbar_expect_tx(full, STAGE_BYTES);
                tma_load_2d_multicast(dst + rank * 32 * 128, &amap, kt * 64, 32 * rank, full, 3);
                tma_load_2d(dst + A_BYTES, &wmap, kt * 64, 128 * rank, full);
            }
        }
        return;
    }
    float acc[64];
    UNROLL for (int e = 0; e < 64; ++e) acc[e] = 0.0f;
    for (int kt = 0; kt < ktiles; ++kt) {
        int s = kt & 1;
        mbar_wait(full0 + 8 * s, (kt >> 1) & 1);
        const char* st = smem + s * STAGE_BYTES;
        unsigned long long da = wgmma_desc_sw128(st), db = wgmma_desc_sw128(st + A_BYTES);
        wgmma_fence();
        UNROLL for (int kk = 0; kk < 4; ++kk) wgmma_m64n128k16<bf16_t>(acc, da + 2 * kk, db + 2 * kk);
        wgmma_commit();
        wgmma_wait<0>();
        if (threadIdx.x == 0) {
            mbar_arrive(empty0 + 8 * s);
            if (mode != 2) mbar_arrive_cluster(empty0 + 8 * s, other);
        }
    }
    UNROLL for (int e = 0; e < 64; ++e) wgmma_pin(acc[e]);
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    float* o = out + rank * 64 * 128;
    UNROLL for (int q = 0; q < 16; ++q) UNROLL for (int h = 0; h < 2; ++h) UNROLL for (int e = 0; e < 2; ++e)
        o[(16 * warp + g + 8 * h) * 128 + 8 * q + 2 * t + e] = acc[4 * q + 2 * h + e];
    if (mode != 3) cluster_sync();  // the other block's last arrivals here have happened
}

// The register-reallocation model (setmaxnreg): 384 threads with __launch_bounds__(384, 1), launched with 168
// registers a thread (64 512 in the block's pool; tests/nvrtc_check.rs holds ptxas to that count). Warpgroup 0
// gives registers back (DEC a thread, none when DEC is 0), warpgroups 1 and 2 ask for INC, then every thread
// writes out[t] = 3t + 1. Balanced (40, 232) as the persistent GEMMs; overdrawn (40, 240) asks 2 048 more than
// the pool holds; no_dec asks for registers nobody gave back. On a GPU the last two hang in setmaxnreg.inc;
// under emu they fail the launch as a deadlock naming it.
template <int DEC, int INC>
DEVI void probe_setmaxnreg_body(int* out) {
    if (threadIdx.x < 128) {
        if constexpr (DEC > 0) setmaxnreg_dec<DEC>();
    } else {
        setmaxnreg_inc<INC>();
    }
    out[threadIdx.x] = 3 * int(threadIdx.x) + 1;
}
extern "C" __global__ void __launch_bounds__(384, 1) probe_setmaxnreg_balanced_i32(int* out) {
    probe_setmaxnreg_body<40, 232>(out);
}
extern "C" __global__ void __launch_bounds__(384, 1) probe_setmaxnreg_overdrawn_i32(int* out) {
    probe_setmaxnreg_body<40, 240>(out);
}
extern "C" __global__ void __launch_bounds__(384, 1) probe_setmaxnreg_no_dec_i32(int* out) {
    probe_setmaxnreg_body<0, 232>(out);
}

// The fences wgmma needs: out[64 x 64] = A[64 x 64] · W[64 x 64]ᵀ (f32) by one warpgroup, its operands loaded by
// cp.async (generic proxy) into the swizzled tiles. `mode`: 0 correct; 1 no fence.proxy.async after the copies
// land (wgmma, in the async proxy, may read stale bytes); 2 no wgmma.fence before the first wgmma (the zeroed
// accumulators may not be ordered before it). Launch: grid 1, block 128, shared 16 KiB + 1 KiB.
extern "C" __global__ void __launch_bounds__(128) probe_wgmma_cp_async_bf16(const bf16_t* A, const bf16_t* W,
        float* out, int mode) {
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    load_tile_sw128<bf16_t, 64, 128>(smem, A, 64, 64, 64, 0, 0);
    load_tile_sw128<bf16_t, 64, 128>(smem + 64 * 128, W, 64, 64, 64, 0, 0);
    cp_async_commit();
    cp_async_wait<0>();
    if (mode != 1) fence_proxy_async();
    __syncthreads();
    float acc[32];
    UNROLL for (int e = 0; e < 32; ++e) acc[e] = 0.0f;
    if (mode != 2) wgmma_fence();
    unsigned long long da = wgmma_desc_sw128(smem), db = wgmma_desc_sw128(smem + 64 * 128);
    UNROLL for (int kk = 0; kk < 4; ++kk) wgmma_m64n64k16<bf16_t>(acc, da + 2 * kk, db + 2 * kk);
    wgmma_commit();
    wgmma_wait<0>();
    UNROLL for (int e = 0; e < 32; ++e) wgmma_pin(acc[e]);
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    UNROLL for (int q = 0; q < 8; ++q) UNROLL for (int h = 0; h < 2; ++h) UNROLL for (int e = 0; e < 2; ++e)
        out[(16 * warp + g + 8 * h) * 64 + 8 * q + 2 * t + e] = acc[4 * q + 2 * h + e];
}

// wgmma with A from registers: out[64 x 64] = P[64 x 16] · V[16 x 64] (f32) by one warpgroup, each thread's
// fragment of P in registers, V MN-major in shared memory (as attention_sm90.cu's p·v). `mode`: 0 correct; 1 the
// thread writes its fragment before wgmma.wait_group (the wgmma may read either value). Launch: grid 1, block
// 128, shared 2 KiB + 1 KiB.
extern "C" __global__ void __launch_bounds__(128) probe_wgmma_regs_bf16(const bf16_t* P, const bf16_t* V, float* out,
        int mode) {
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    load_tile_sw128<bf16_t, 16, 128>(smem, V, 64, 16, 64, 0, 0);
    cp_async_commit();
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    u32 a[4];
    UNROLL for (int j = 0; j < 4; ++j) {
        const bf16_t* p = P + (16 * warp + g + 8 * (j & 1)) * 16 + 2 * t + 8 * (j >> 1);
        a[j] = pack2<bf16_t>(to_f32(p[0]), to_f32(p[1]));
    }
    float acc[32];
    UNROLL for (int e = 0; e < 32; ++e) acc[e] = 0.0f;
    wgmma_fence();
    wgmma_m64n64k16_rs_mn<bf16_t>(acc, a, wgmma_desc_sw128(smem));
    wgmma_commit();
    if (mode == 1) a[0] ^= 0x80008000u;  // both halves negated, under the wgmma still in flight
    wgmma_wait<0>();
    UNROLL for (int e = 0; e < 32; ++e) wgmma_pin(acc[e]);
    UNROLL for (int q = 0; q < 8; ++q) UNROLL for (int h = 0; h < 2; ++h) UNROLL for (int e = 0; e < 2; ++e)
        out[(16 * warp + g + 8 * h) * 64 + 8 * q + 2 * t + e] = acc[4 * q + 2 * h + e];
}
