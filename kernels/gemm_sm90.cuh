// kernels/gemm_sm90.cuh — what the Hopper GEMM files (gemm_sm90.cu, gemm_persistent_sm90.cu) share, after
// common.cuh and hopper.cuh: the tile constants, the epilogue through shared memory (park, store walk, row
// statistics) and the TMA producer of one output tile.
#pragma once

#define G90_BM 128
#define G90_BK 64

// The C signature of the TMA-fed GEMM kernels for storage type T (the operands as tensor maps), in the order
// src/gpu/ops/gemm.rs packs it, and what an entry point passes its body: (M, N, K, ldc, &amap, &wmap, epilogue, C).
#define G90_TMA_PARAMS(T)                                                                                             \
    int M, int N, int K, int ldr, int ldc, const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap,  \
        const T *bias, const T *residual, const T *layer_scale, const float *row_stats, const float *col_sum, T *C,  \
        float *row_partials, int act
#define G90_TMA_ARGS(T)                                                                                               \
    M, N, K, ldc, &amap, &wmap, GemmEpi<T>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C

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
template <class T, int COLS, int ROWS>
DEVI void g90_row_partials(int tid, int nthreads, int m0, int n0, int M, int N, int ldc, bool vec, const T* C,
                           float* partials) {
    constexpr int CHUNKS = COLS / 8;
    compiler_barrier();
    int parts = ceil_div(N, COLS), count = min(COLS, N - n0);
    for (int i = tid; i < ROWS * CHUNKS; i += nthreads) {  // the same trip count on every lane
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

// C[m0 + r, n0 + c] for r < ROWS, c < COLS from `tile` (row stride LDT floats), by `nthreads` threads numbered
// from 0 (`tid`).
template <class T, int LDT, int COLS, int ROWS = G90_BM>
DEVI void g90_store(const float* tile, int tid, int nthreads, int m0, int n0, int M, int N, int ldc,
                    const GemmEpi<T>& ep, T* C) {
    constexpr int CHUNKS = COLS / 8;
    const T *bias = ep.bias, *residual = ep.residual, *layer_scale = ep.layer_scale;
    // 16-byte vectors need every row start and every pointer 16-byte aligned (8 elements of 2 bytes).
    bool vec = ((ldc | (residual ? ep.ldr : 0)) & 7) == 0 &&
               (((unsigned long long)C | (unsigned long long)residual | (unsigned long long)bias |
                 (unsigned long long)layer_scale | (unsigned long long)ep.col_sum) & 15) == 0;
    for (int i = tid; i < ROWS * CHUNKS; i += nthreads) {
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
    if (ep.row_partials) g90_row_partials<T, COLS, ROWS>(tid, nthreads, m0, n0, M, N, ldc, vec, C, ep.row_partials);
}

// The producer's loads of one output tile (rows m0.., columns n0..) into the ring, fills fill .. fill+ktiles-1:
// stage fill % STAGES, once its previous use (phase (fill / STAGES) - 1) has been released. A comes in A_BOXES
// boxes of 128 rows (the map's box), W after A_BYTES.
// MULTICAST, in a cluster of 2 blocks: G90_SHARE_A (the A map's boxes half a block tile's rows) or G90_SHARE_W (the
// W map's boxes half the W tile's rows): block `rank` loads only half `rank` of that operand, into both blocks'
// stage; its full barrier still expects the whole stage (the other block sends the other half).
#define G90_SHARE_A 1
#define G90_SHARE_W 2
template <int STAGES, int A_BYTES, int STAGE_BYTES, int A_BOXES = 1, int MULTICAST = 0>
DEVI void g90_produce_tile(int& fill, int ktiles, char* smem, u32 full0, u32 empty0, const TmaMap* amap,
                           const TmaMap* wmap, int m0, int n0, u32 rank = 0) {
    for (int kt = 0; kt < ktiles; ++kt, ++fill) {
        int s = fill % STAGES;
        if (fill >= STAGES) mbar_wait(empty0 + 8 * s, ((fill / STAGES) - 1) & 1);
        u32 full = full0 + 8 * s, dst = smem_addr(smem + s * STAGE_BYTES);
        mbar_expect_tx(full, STAGE_BYTES);
        constexpr int W_HALF = (STAGE_BYTES - A_BYTES) / 2;  // bytes of half the W tile (128 bytes a row)
        if (MULTICAST == G90_SHARE_A)
            tma_load_2d_multicast(dst + rank * A_BYTES / 2, amap, kt * G90_BK, m0 + A_BOXES * 64 * rank, full, 3);
        else
            for (int j = 0; j < A_BOXES; ++j) tma_load_2d(dst + j * 128 * 128, amap, kt * G90_BK, m0 + 128 * j, full);
        if (MULTICAST == G90_SHARE_W)
            tma_load_2d_multicast(dst + A_BYTES + rank * W_HALF, wmap, kt * G90_BK, n0 + W_HALF / 128 * rank, full, 3);
        else
            tma_load_2d(dst + A_BYTES, wmap, kt * G90_BK, n0, full);
    }
}
