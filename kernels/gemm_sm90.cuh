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

// 8 floats of a park buffer's chunk at p (16-byte aligned), its 16-byte halves swapped when `swap`
// (g90_half_swap).
DEVI void lds_f32x8(float (&v)[8], const float* p, int swap) {
    UNROLL for (int h = 0; h < 2; ++h) {
        F4 q = lds(reinterpret_cast<const F4*>(p) + (h ^ swap));
        v[4 * h] = q.x, v[4 * h + 1] = q.y, v[4 * h + 2] = q.z, v[4 * h + 3] = q.w;
    }
}

// The epilogue goes through shared memory (free once the main loop is done): each consumer thread parks its
// accumulators in an f32 tile [rows][COLS + 8], then the consumers walk the tile in rows of 8-column chunks, so
// bias, layer scale, residual and output move in coalesced 16-byte vectors and the per-element code is one
// short loop rather than 64 unrolled copies (which overflowed the instruction cache).
// Accumulator layout of m64nNk16 (per warp of the warpgroup, like mma.m16n8 tiled along N): register
// 4·q + 2·h + e holds row 16·warp + lane/4 + 8·h, column 8·q + 2·(lane%4) + e.
//
// Banks: the park's 8-byte stores hit 32 distinct banks per half-warp thanks to the row padding. The walk reads
// chunk i = r·COLS/8 + c/8 on lane i % 32 in two 16-byte loads, served 8 lanes at a time; unswizzled, two lanes of
// each 8 hit the same 4 banks, so every load took two passes. So the two 16-byte halves of a chunk are stored
// swapped when g90_half_swap says so (bit 2 of i; bit 1 when a row is 2 chunks, where the padding shifts rows by
// 24 words): each 8 lanes then cover all 32 banks (tests/gpu_banks.rs counts it).
template <int COLS>
DEVI constexpr int g90_swap_bit() {
    constexpr int CHUNKS = COLS / 8;
    static_assert(CHUNKS >= 2 && (CHUNKS & (CHUNKS - 1)) == 0, "a power-of-two number of chunks a row");
    return CHUNKS == 2 ? 1 : 2;
}
template <int COLS>
DEVI int g90_half_swap(int r, int chunk) {
    return ((r * (COLS / 8) + chunk) >> g90_swap_bit<COLS>()) & 1;
}
// Where a park's lane (g, t) stores its column pair 2t of a chunk, in every row 8·k + g: off[b] for the chunks whose
// bit g90_swap_bit is b (a compile-time index at each unrolled store). Rows 8·k apart share the swap (8 rows are a
// multiple of 2^(bit+1) chunks), and a chunk's bits add to the row's without carry, so this is g90_half_swap's
// swizzle computed once a thread.
template <int COLS>
DEVI void g90_park_offsets(int g, int t, int (&off)[2]) {
    off[0] = 2 * t ^ (g90_half_swap<COLS>(g, 0) << 2);
    off[1] = off[0] ^ 4;
}
template <int COLS>
DEVI constexpr int g90_chunk_swap(int chunk) {
    return (chunk >> g90_swap_bit<COLS>()) & 1;
}

template <int NB>
DEVI void g90_park(float (&acc)[NB][64], float* tile, int row0) {
    constexpr int COLS = NB * 128, LDT = COLS + 8;
    int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    int g = lane >> 2, t = lane & 3, off[2];
    g90_park_offsets<COLS>(g, t, off);  // row0 is a multiple of 64
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int q = 0; q < 16; ++q) UNROLL for (int h = 0; h < 2; ++h) {
        float* p = tile + (row0 + warp * 16 + g + 8 * h) * LDT + j * 128 + q * 8 + off[g90_chunk_swap<COLS>(16 * j + q)];
        sts(reinterpret_cast<F2*>(p), F2{acc[j][4 * q + 2 * h], acc[j][4 * q + 2 * h + 1]});
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
            load8<T, true>(v, C + (long)m * ldc + n);
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

// C[m0 + r, n0 + c] for r < ROWS, c < COLS from `tile` (row stride LDT floats), by NTHREADS threads numbered
// from 0 (`tid`). A thread keeps one 8-column chunk for every row it stores (NTHREADS is a multiple of the
// chunks a row), so its bias, layer scale and column sums are loaded once, not once a row.
template <class T, int LDT, int COLS, int NTHREADS, int ROWS = G90_BM>
DEVI void g90_store(const float* tile, int tid, int m0, int n0, int M, int N, int ldc, const GemmEpi<T>& ep, T* C) {
    constexpr int CHUNKS = COLS / 8;
    static_assert(NTHREADS % CHUNKS == 0, "a thread's column chunk must not change from row to row");
    const T *bias = ep.bias, *residual = ep.residual, *layer_scale = ep.layer_scale;
    // 16-byte vectors need every row start and every pointer 16-byte aligned (8 elements of 2 bytes).
    bool vec = ((ldc | (residual ? ep.ldr : 0)) & 7) == 0 && aligned16(C, residual, bias, layer_scale, ep.col_sum);
    int c = (tid % CHUNKS) * 8, n = n0 + c;
    bool vec_chunk = vec && n + 8 <= N;
    float col_sum[8], bias8[8], scale8[8];
    if (vec_chunk) {
        if (ep.row_stats) load8(col_sum, ep.col_sum + n);
        if (bias) load8(bias8, bias + n);
        if (layer_scale) load8(scale8, layer_scale + n);
    }
    for (int r = tid / CHUNKS; r < ROWS && n < N; r += NTHREADS / CHUNKS) {
        int m = m0 + r;
        if (m >= M) break;
        const float* src = tile + r * LDT + c;  // 16-byte aligned
        int swap = g90_half_swap<COLS>(r, c >> 3);
        if (vec_chunk) {
            float v[8], w[8];
            lds_f32x8(v, src, swap);
            if (ep.row_stats) {
                F2 st = reinterpret_cast<const F2*>(ep.row_stats)[m];  // (mean, rstd)
                UNROLL for (int e = 0; e < 8; ++e) v[e] = folded_norm(v[e], st.x, st.y, col_sum[e]);
            }
            if (bias) UNROLL for (int e = 0; e < 8; ++e) v[e] += bias8[e];
            if (ep.act == 1) {
                UNROLL for (int e = 0; e < 8; ++e) v[e] = gelu_erf(v[e]);
            } else if (ep.act == 2) {
                UNROLL for (int e = 0; e < 8; ++e) v[e] = quick_gelu(v[e]);
            }
            if (layer_scale) UNROLL for (int e = 0; e < 8; ++e) v[e] *= scale8[e];
            if (residual) {
                load8<T, true>(w, residual + (long)m * ep.ldr + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] += w[e];
            }
            store8<T>(C + (long)m * ldc + n, v);
        } else {
            for (int e = 0; e < 8 && n + e < N; ++e)
                C[(long)m * ldc + n + e] = from_f32<T>(gemm_epilogue(src[e ^ (swap << 2)], m, n + e, ep));
        }
    }
    if (ep.row_partials) g90_row_partials<T, COLS, ROWS>(tid, NTHREADS, m0, n0, M, N, ldc, vec, C, ep.row_partials);
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
