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
// variants load the same layout with the tensor memory accelerator; the persistent ping-pong variant (`pp`,
// below) walks all tiles with one block per SM.
// Needs K, lda, ldw multiples of 8 and 16-byte aligned A, W (the launcher falls back to gemm.cu otherwise).
//
// Launch: grid (ceil(N/BN), ceil(M/128)) (pp: min(#tiles, #SMs)), block 256 / 384 / 288, shared bytes per
// variant (Sm90Variant::shared_bytes in src/gpu/ops/gemm.rs).
#include "common.cuh"
#include "hopper.cuh"

#define G90_BM 128
#define G90_BK 64

struct __align__(16) F4 {
    float x, y, z, w;
};
struct __align__(8) F2 {
    float x, y;
};

// 8 consecutive floats at p (16-byte aligned; shared or global memory) in two 16-byte loads.
DEVI void load_f32x8(float (&v)[8], const float* p) {
    UNROLL for (int h = 0; h < 2; ++h) {
        F4 q = reinterpret_cast<const F4*>(p)[h];
        v[4 * h] = q.x, v[4 * h + 1] = q.y, v[4 * h + 2] = q.z, v[4 * h + 3] = q.w;
    }
}

// 8 consecutive 16-bit elements at p (16-byte aligned) as f32, with a coherent load (the residual may be the
// output itself), and the converse store.
template <class T>
DEVI void load_vec8(float (&v)[8], const T* p) {
    u32 r[4];
    ld_global_16_coherent(r, p);
    UNROLL for (int e = 0; e < 4; ++e) {
        v[2 * e] = lo_f32<T>(r[e]);
        v[2 * e + 1] = hi_f32<T>(r[e]);
    }
}
template <class T>
DEVI void store_vec8(T* p, const float (&v)[8]) {
    u32 r[4];
    UNROLL for (int e = 0; e < 4; ++e) r[e] = pack2<T>(v[2 * e], v[2 * e + 1]);
    st_global_16(p, r);
}

// The epilogue goes through shared memory (free once the main loop is done): each consumer thread parks its
// accumulators in an f32 tile [128][BN + 8], then the consumers walk the tile in rows of 8-column chunks, so
// bias, layer scale, residual and output move in coalesced 16-byte vectors and the per-element code is one
// short loop rather than 64 unrolled copies (which overflowed the instruction cache).
// Accumulator layout of m64nNk16 (per warp of the warpgroup, like mma.m16n8 tiled along N): register
// 4·q + 2·h + e holds row 16·warp + lane/4 + 8·h, column 8·q + 2·(lane%4) + e.
template <int NB>
DEVI void g90_park(float (&acc)[NB][64], float* tile, int row0) {
    constexpr int LDT = NB * 128 + 8;
    int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    int g = lane >> 2, t = lane & 3;
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int q = 0; q < 16; ++q) UNROLL for (int h = 0; h < 2; ++h) {
        float* p = tile + (row0 + warp * 16 + g + 8 * h) * LDT + j * 128 + q * 8 + 2 * t;
        p[0] = acc[j][4 * q + 2 * h];
        p[1] = acc[j][4 * q + 2 * h + 1];
    }
}

// Each row's statistics over columns [n0, n0 + COLS) of C (GemmEpi::row_partials), from the values as stored: every
// thread reads back the chunks g90_store gave it (its own writes), with the same walk, so a row's COLS / 8 chunks
// are on consecutive lanes of one warp.
template <class T, int COLS>
DEVI void g90_row_partials(int tid, int nthreads, int m0, int n0, int M, int N, int ldc, bool vec, const T* C,
                           float* partials) {
    constexpr int CHUNKS = COLS / 8;
    compiler_barrier();
    int parts = ceil_div(N, COLS), count = min(COLS, N - n0);
    for (int i = tid; i < G90_BM * CHUNKS; i += nthreads) {  // the same trip count on every lane
        int m = m0 + i / CHUNKS, n = n0 + (i % CHUNKS) * 8;
        float v[8];
        unsigned valid = 0;
        if (m < M && n < N && vec && n + 8 <= N) {
            load_vec8<T>(v, C + (long)m * ldc + n);
            valid = 0xffu;
        } else {
            UNROLL for (int e = 0; e < 8; ++e) {
                bool ok = m < M && n + e < N;
                v[e] = ok ? to_f32(C[(long)m * ldc + n + e]) : 0.0f;
                valid |= (unsigned)ok << e;
            }
        }
        row_partial_stats<CHUNKS>(v, valid, count, m < M, partials + 2 * ((long)m * parts + n0 / COLS));
    }
}

// C[m0 + r, n0 + c] for r < 128, c < COLS from `tile` (row stride LDT floats), by `nthreads` threads numbered
// from 0 (`tid`).
template <class T, int LDT, int COLS>
DEVI void g90_store(const float* tile, int tid, int nthreads, int m0, int n0, int M, int N, int ldc,
                    const GemmEpi<T>& ep, T* C) {
    constexpr int CHUNKS = COLS / 8;
    const T *bias = ep.bias, *residual = ep.residual, *layer_scale = ep.layer_scale;
    // 16-byte vectors need every row start and every pointer 16-byte aligned (8 elements of 2 bytes).
    bool vec = ((ldc | (residual ? ep.ldr : 0)) & 7) == 0 &&
               (((unsigned long long)C | (unsigned long long)residual | (unsigned long long)bias |
                 (unsigned long long)layer_scale | (unsigned long long)ep.col_sum) & 15) == 0;
    for (int i = tid; i < G90_BM * CHUNKS; i += nthreads) {
        int r = i / CHUNKS, c = (i % CHUNKS) * 8;
        int m = m0 + r, n = n0 + c;
        if (m >= M || n >= N) continue;
        const float* src = tile + r * LDT + c;
        if (vec && n + 8 <= N) {
            float v[8], w[8];
            load_f32x8(v, src);  // src is 16-byte aligned
            if (ep.row_stats) {
                F2 st = reinterpret_cast<const F2*>(ep.row_stats)[m];  // (mean, rstd)
                load_f32x8(w, ep.col_sum + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] = folded_norm(v[e], st.x, st.y, w[e]);
            }
            if (bias) {
                load_vec8<T>(w, bias + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] += w[e];
            }
            if (ep.act == 1) {
                UNROLL for (int e = 0; e < 8; ++e) v[e] = gelu_erf(v[e]);
            } else if (ep.act == 2) {
                UNROLL for (int e = 0; e < 8; ++e) v[e] = quick_gelu(v[e]);
            }
            if (layer_scale) {
                load_vec8<T>(w, layer_scale + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] *= w[e];
            }
            if (residual) {
                load_vec8<T>(w, residual + (long)m * ep.ldr + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] += w[e];
            }
            store_vec8<T>(C + (long)m * ldc + n, v);
        } else {
            for (int e = 0; e < 8 && n + e < N; ++e)
                C[(long)m * ldc + n + e] = from_f32<T>(gemm_epilogue(src[e], m, n + e, ep));
        }
    }
    if (ep.row_partials) g90_row_partials<T, COLS>(tid, nthreads, m0, n0, M, N, ldc, vec, C, ep.row_partials);
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
        const char* st = smem + (kt % STAGES) * STAGE_BYTES;
        unsigned long long da = wgmma_desc_sw128(st + wg * 64 * 128);
        unsigned long long db = wgmma_desc_sw128(st + A_BYTES);
        wgmma_fence();
        UNROLL for (int kk = 0; kk < G90_BK / 16; ++kk) {
            // +32 bytes per k16 step inside the swizzled row: the descriptor's address field is in 16-byte units.
            UNROLL for (int j = 0; j < NB; ++j)
                wgmma_m64n128k16<T>(acc[j], da + 2 * kk, db + (unsigned long long)(j * 128 * 128 / 16) + 2 * kk);
        }
        wgmma_commit();
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
    g90_store<T, BN + 8, BN>(tile, threadIdx.x, 256, bm, bn, M, N, ldc, ep, C);
}

// ---------------------------------------------------------------------------------------------------------
// Warp-specialised variant: the tensor memory accelerator (TMA) loads each operand tile straight into the
// swizzled layout and signals an mbarrier; 384 threads = warpgroup 0 (one thread issues the loads) + two
// consumer warpgroups (wgmma). Stage s has a "full" barrier (1 arrival + the tile's bytes) and an "empty"
// barrier (one arrival per consumer warpgroup once its wgmma group reading s has retired).
// ---------------------------------------------------------------------------------------------------------
// The producer's loads of one output tile (rows m0.., columns n0..) into the ring, fills fill .. fill+ktiles-1:
// stage fill % STAGES, once its previous use (phase (fill / STAGES) - 1) has been released. A comes in A_BOXES
// boxes of 128 rows (the map's box), W after A_BYTES.
// MULTICAST (a cluster of 2 blocks sharing A, the map's boxes half a block tile's rows): block `rank` loads only
// half `rank` of A, into both blocks' stage; its full barrier still expects the whole stage (the other block
// sends the other half).
template <int STAGES, int A_BYTES, int STAGE_BYTES, int A_BOXES = 1, bool MULTICAST = false>
DEVI void g90_produce_tile(int& fill, int ktiles, char* smem, u32 full0, u32 empty0, const TmaMap* amap,
                           const TmaMap* wmap, int m0, int n0, u32 rank = 0) {
    for (int kt = 0; kt < ktiles; ++kt, ++fill) {
        int s = fill % STAGES;
        if (fill >= STAGES) mbar_wait(empty0 + 8 * s, ((fill / STAGES) - 1) & 1);
        u32 full = full0 + 8 * s, dst = smem_addr(smem + s * STAGE_BYTES);
        mbar_expect_tx(full, STAGE_BYTES);
        if (MULTICAST)
            tma_load_2d_multicast(dst + rank * A_BYTES / 2, amap, kt * G90_BK, m0 + A_BOXES * 64 * rank, full, 3);
        else
            for (int j = 0; j < A_BOXES; ++j) tma_load_2d(dst + j * 128 * 128, amap, kt * G90_BK, m0 + 128 * j, full);
        tma_load_2d(dst + A_BYTES, wmap, kt * G90_BK, n0, full);
    }
}

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
        const char* st = smem + s * STAGE_BYTES;
        unsigned long long da = wgmma_desc_sw128(st + cw * 64 * 128);
        unsigned long long db = wgmma_desc_sw128(st + A_BYTES);
        wgmma_fence();
        UNROLL for (int kk = 0; kk < G90_BK / 16; ++kk) {
            UNROLL for (int j = 0; j < NB; ++j)
                wgmma_m64n128k16<T>(acc[j], da + 2 * kk, db + (unsigned long long)(j * 128 * 128 / 16) + 2 * kk);
        }
        wgmma_commit();
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
    g90_store<T, BN + 8, BN>(tile, ct, 256, bm, bn, M, N, ldc, ep, C);
}
// ---------------------------------------------------------------------------------------------------------
// Persistent variants: one block per SM walks the output tiles, N fastest (a block row of A is then read from
// memory once while W stays in L2). 384 threads: warpgroup 0 is the producer (one thread issues TMA loads for
// every tile of the block, in order, into a STAGES-deep ring; the warpgroup gives up registers), warpgroups 1
// and 2 are consumers with a 128 x 128 f32 accumulator tile each (two m64n128k16 per k16 step, 128 registers).
//   PP_PINGPONG (`pp`): block tiles are 128 x 128 and the consumers take alternate ones, so one consumer's
//     epilogue runs while the other's wgmma keep the tensor cores busy. PP_ORDERED (`ppo`): the same, with
//     the main loops taking turns (named barriers 4 and 5: consumer c waits on 4 + c until the other has
//     finished the main loop of the tile before).
//   PP_COOPERATIVE (`coop`): block tiles are 256 x 128 and both consumers work on each (rows [128c, 128c+128)),
//     sharing the W tile of every stage: a quarter less L2 traffic per flop, but no epilogue overlap.
//   MC (`coopmc`, `ppomc`): the kernel in clusters of 2 blocks (__cluster_dims__(2, 1, 1)) that take the two
//     128-column halves of a BM x 256 tile: they share its A rows, each loading half of them by TMA multicast
//     into both, so L2 sends 2/3 (coop) or 3/4 (ppo) of the bytes per flop. A stage is refilled only once the
//     consumers of both blocks have released it (each arrives at its block's empty barrier and the other's).
// The ring is shared in fill order: the block's i-th tile uses fills [i·KT, (i+1)·KT) (KT = k tiles), stage
// fill % STAGES, phase parity (fill / STAGES) & 1. Each consumer parks its accumulators in its own shared f32
// buffer, CW columns at a time, for a coalesced epilogue.
// Launch: grid min(#tiles, #SMs), block 384, shared bytes as Sm90Variant::shared_bytes.
// ---------------------------------------------------------------------------------------------------------
#define PP_PINGPONG 0
#define PP_ORDERED 1
#define PP_COOPERATIVE 2


// Columns [CW·C, CW·C + CW) of one consumer's 128 x 128 tile (acc[h2] holds rows [64·h2, 64·h2 + 64) in the
// m64n128 layout) into its park buffer (row stride CW + 8 floats: a half-warp's 8-byte stores hit 32 distinct
// banks): compile-time register indices, so the accumulators stay in registers.
template <int CW, int C>
DEVI void g90_pp_park(float (&acc)[2][64], float* park, int ct) {
    int warp = ct >> 5, g = (ct & 31) >> 2, t = ct & 3;
    UNROLL for (int h2 = 0; h2 < 2; ++h2) UNROLL for (int q = 0; q < CW / 8; ++q) UNROLL for (int h = 0; h < 2; ++h) {
        int reg = 4 * (CW / 8 * C + q) + 2 * h;
        F2 v;
        v.x = acc[h2][reg];
        v.y = acc[h2][reg + 1];
        *reinterpret_cast<F2*>(park + (64 * h2 + 16 * warp + g + 8 * h) * (CW + 8) + 8 * q + 2 * t) = v;
    }
}
// Chunk c (a run-time value) through the compile-time parks.
template <int CW, int C = 0>
DEVI void g90_pp_park_chunk(int c, float (&acc)[2][64], float* park, int ct) {
    if constexpr (C < 128 / CW) {
        if (c == C) g90_pp_park<CW, C>(acc, park, ct);
        else g90_pp_park_chunk<CW, C + 1>(c, acc, park, ct);
    }
}

// Epilogue of one consumer's tile, CW columns at a time. The chunk loop stays rolled so that the store walk
// (bias, activation, residual) exists once in the binary: unrolled, its copies tripled the kernel's code.
template <class T, int CW>
DEVI void g90_pp_epilogue(float (&acc)[2][64], float* park, int ct, int bar, int m0, int n0, int M, int N, int ldc,
                          const GemmEpi<T>& ep, T* C) {
#pragma unroll 1
    for (int c = 0; c < 128 / CW; ++c) {
        named_barrier_sync(bar, 128);  // this warpgroup's walk of the previous chunk has read the buffer
        g90_pp_park_chunk<CW>(c, acc, park, ct);
        named_barrier_sync(bar, 128);
        g90_store<T, CW + 8, CW>(park, ct, 128, m0, n0 + CW * c, M, N, ldc, ep, C);
    }
}

template <class T, int STAGES, int MODE, bool MC = false>
DEVI void g90_pp_body(int M, int N, int K, int ldc, const TmaMap* amap, const TmaMap* wmap, const GemmEpi<T>& ep,
                      T* C) {
    constexpr bool COOP = MODE == PP_COOPERATIVE, ORDERED = MODE == PP_ORDERED;
    constexpr int BM = COOP ? 256 : 128, CW = COOP ? 16 : 32;  // block tile rows; park columns per chunk
    constexpr int A_BYTES = BM * 128, STAGE_BYTES = A_BYTES + 128 * 128, PARK_BYTES = 128 * (CW + 8) * 4;
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    float* park0 = reinterpret_cast<float*>(smem + STAGES * STAGE_BYTES);
    u32 full0 = smem_addr(smem + STAGES * STAGE_BYTES + 2 * PARK_BYTES), empty0 = full0 + 8 * STAGES;
    // Work units: block tiles, or with MC pairs of 128-column tiles (block `rank` of its cluster takes column
    // tile 2·j + rank of unit j; the clusters walk the units as the blocks do otherwise).
    u32 rank = MC ? cluster_ctarank() : 0;
    int ntn = ceil_div(N, 128), nun = MC ? ceil_div(ntn, 2) : ntn, ktiles = ceil_div(K, G90_BK);
    int ntiles = ceil_div(M, BM) * nun, unit0 = MC ? blockIdx.x / 2 : blockIdx.x, units = MC ? gridDim.x / 2 : gridDim.x;
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full0 + 8 * s, 1);                          // the producer's expect_tx, then the tile's bytes
            mbar_init(empty0 + 8 * s, (COOP ? 2 : 1) * (MC ? 2 : 1));  // the consumers that read the stage
        }
        fence_mbarrier_init();
    }
    __syncthreads();
    if (MC) cluster_sync();  // the other block's barriers are initialised before anything reaches them
    int wg = threadIdx.x >> 7;
    if (wg == 0) {
        setmaxnreg_dec<40>();
        if (threadIdx.x == 0) {
            int fill = 0;
            for (int tile = unit0; tile < ntiles; tile += units)
                g90_produce_tile<STAGES, A_BYTES, STAGE_BYTES, BM / 128, MC>(
                    fill, ktiles, smem, full0, empty0, amap, wmap, (tile / nun) * BM,
                    ((tile % nun) * (MC ? 2 : 1) + rank) * 128, rank);
        }
        return;  // no barrier of the whole block follows
    }
    setmaxnreg_inc<232>();
    int cw = wg - 1, ct = threadIdx.x & 127;
    float* park = park0 + cw * 128 * (CW + 8);
    float acc[2][64];
    int mine = ceil_div(ntiles - unit0, units);         // tiles of this block
    int first = COOP ? 0 : cw, step = COOP ? 1 : 2;       // this consumer's tiles of them
    // A stage read: released to this block's producer, and with MC to the other block's, which fills it too.
    auto release = [&](int fill) {
        if (ct != 0) return;
        mbar_arrive(empty0 + 8 * (fill % STAGES));
        if (MC) mbar_arrive_cluster(empty0 + 8 * (fill % STAGES), rank ^ 1);
    };
    for (int i = first, tile = unit0 + first * units; tile < ntiles; i += step, tile += step * units) {
        UNROLL for (int h2 = 0; h2 < 2; ++h2) UNROLL for (int e = 0; e < 64; ++e) acc[h2][e] = 0.0f;
        if (ORDERED && i > 0) named_barrier_sync(4 + cw, 256);  // the other consumer's main loop of tile i-1 is done
        int fill0 = i * ktiles;
        for (int kt = 0; kt < ktiles; ++kt) {
            int fill = fill0 + kt, s = fill % STAGES;
            mbar_wait(full0 + 8 * s, (fill / STAGES) & 1);
            const char* st = smem + s * STAGE_BYTES;
            unsigned long long da = wgmma_desc_sw128(st + (COOP ? cw * 128 * 128 : 0));
            unsigned long long db = wgmma_desc_sw128(st + A_BYTES);
            wgmma_fence();
            UNROLL for (int kk = 0; kk < G90_BK / 16; ++kk) UNROLL for (int h2 = 0; h2 < 2; ++h2)
                wgmma_m64n128k16<T>(acc[h2], da + (unsigned long long)(h2 * 64 * 128 / 16) + 2 * kk, db + 2 * kk);
            wgmma_commit();
            wgmma_wait<1>();  // the previous k tile's group has retired: its stage may be refilled
            if (kt > 0) release(fill - 1);
        }
        wgmma_wait<0>();
        release(fill0 + ktiles - 1);
        if (ORDERED && i + 1 < mine) named_barrier_arrive(5 - cw, 256);  // tile i+1's consumer may start
        UNROLL for (int h2 = 0; h2 < 2; ++h2) UNROLL for (int e = 0; e < 64; ++e) wgmma_pin(acc[h2][e]);
        int m0 = (tile / nun) * BM + (COOP ? 128 * cw : 0), n0 = ((tile % nun) * (MC ? 2 : 1) + rank) * 128;
        if (n0 < N) g90_pp_epilogue<T, CW>(acc, park, ct, 2 + cw, m0, n0, M, N, ldc, ep, C);  // MC: odd ntn
    }
    if (MC) cluster_sync();  // the other block has made its last arrival here
}

// Variants: BN x STAGES (n128s3: 97 KiB of shared memory, two blocks per SM, each tile's wgmma retired before
// the next; n128s4: 129 KiB, one block, one wgmma group in flight; n256s4: 193 KiB, one block, in flight).
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s4_bf16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const bf16_t* A, const bf16_t* W, const bf16_t* bias, const bf16_t* residual, const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_body<bf16_t, 128, 4>(M, N, K, lda, ldw, ldc, A, W,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s4_f16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const f16_t* A, const f16_t* W, const f16_t* bias, const f16_t* residual, const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_body<f16_t, 128, 4>(M, N, K, lda, ldw, ldc, A, W,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s3_bf16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const bf16_t* A, const bf16_t* W, const bf16_t* bias, const bf16_t* residual, const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_body<bf16_t, 128, 3>(M, N, K, lda, ldw, ldc, A, W,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s3_f16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const f16_t* A, const f16_t* W, const f16_t* bias, const f16_t* residual, const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_body<f16_t, 128, 3>(M, N, K, lda, ldw, ldc, A, W,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n256s4_bf16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const bf16_t* A, const bf16_t* W, const bf16_t* bias, const bf16_t* residual, const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_body<bf16_t, 256, 4>(M, N, K, lda, ldw, ldc, A, W,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n256s4_f16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const f16_t* A, const f16_t* W, const f16_t* bias, const f16_t* residual, const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_body<f16_t, 256, 4>(M, N, K, lda, ldw, ldc, A, W,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}

// TMA variants (384 threads, one block per SM): n128s5 161 KiB of shared memory, n256s3 145 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n128s5_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_tma_body<bf16_t, 128, 5, false>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n128s5_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_tma_body<f16_t, 128, 5, false>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n256s3_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_tma_body<bf16_t, 256, 3, false>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n256s3_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_tma_body<f16_t, 256, 3, false>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
// Lean TMA variant (288 threads, two blocks per SM): n128s3, 97 KiB of shared memory.
extern "C" __global__ void __launch_bounds__(288, 2) gemm_sm90_tmaw_n128s3_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_tma_body<bf16_t, 128, 3, true>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(288, 2) gemm_sm90_tmaw_n128s3_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_tma_body<f16_t, 128, 3, true>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
// Persistent ping-pong variant (384 threads, one block per SM, grid min(#tiles, #SMs)): pp_n128s5, 201 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_pp_n128s5_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_pp_body<bf16_t, 5, PP_PINGPONG>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_pp_n128s5_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_pp_body<f16_t, 5, PP_PINGPONG>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
// The same with the consumers' main loops in turn (PP_ORDERED): ppo_n128s5.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_ppo_n128s5_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_pp_body<bf16_t, 5, PP_ORDERED>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_ppo_n128s5_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_pp_body<f16_t, 5, PP_ORDERED>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
// Cooperative: 256 x 128 block tiles, both consumers on each (PP_COOPERATIVE): coop_n128s4, 217 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_coop_n128s4_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, const float* row_stats,
        const float* col_sum, bf16_t* C, float* row_partials, int act) {
    g90_pp_body<bf16_t, 4, PP_COOPERATIVE>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_coop_n128s4_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, const float* row_stats,
        const float* col_sum, f16_t* C, float* row_partials, int act) {
    g90_pp_body<f16_t, 4, PP_COOPERATIVE>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
// In clusters of two sharing A by multicast (MC): coopmc_n128s4 (217 KiB), ppomc_n128s5 (201 KiB).
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_coopmc_n128s4_bf16(int M, int N,
        int K, int ldr, int ldc, const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias,
        const bf16_t* residual, const bf16_t* layer_scale, const float* row_stats, const float* col_sum, bf16_t* C,
        float* row_partials, int act) {
    g90_pp_body<bf16_t, 4, PP_COOPERATIVE, true>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_coopmc_n128s4_f16(int M, int N,
        int K, int ldr, int ldc, const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias,
        const f16_t* residual, const f16_t* layer_scale, const float* row_stats, const float* col_sum, f16_t* C,
        float* row_partials, int act) {
    g90_pp_body<f16_t, 4, PP_COOPERATIVE, true>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_ppomc_n128s5_bf16(int M, int N,
        int K, int ldr, int ldc, const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias,
        const bf16_t* residual, const bf16_t* layer_scale, const float* row_stats, const float* col_sum, bf16_t* C,
        float* row_partials, int act) {
    g90_pp_body<bf16_t, 5, PP_ORDERED, true>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<bf16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_ppomc_n128s5_f16(int M, int N,
        int K, int ldr, int ldc, const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias,
        const f16_t* residual, const f16_t* layer_scale, const float* row_stats, const float* col_sum, f16_t* C,
        float* row_partials, int act) {
    g90_pp_body<f16_t, 5, PP_ORDERED, true>(M, N, K, ldc, &amap, &wmap,
        GemmEpi<f16_t>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C);
}
