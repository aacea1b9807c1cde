// kernels/gemm.cu — tensor-core GEMM with a fused epilogue, the Linear layer of every transformer block:
//
//   C[m,n] = residual[m,n] + layer_scale[n] · act( norm_m(Σ_k A[m,k]·W[n,k]) + bias[n] )
//
// A: [M,K] row-major (lda), W: [N,K] row-major (ldw; PyTorch's Linear weight), C: [M,N] (ldc), residual (ldr)
// may alias C with ldr == ldc (each element is read and then written by the same thread). bias, residual,
// layer_scale may be null (term skipped). act: 0 none, 1 gelu (erf), 2 quick_gelu. norm_m(v) = rstd_m·(v −
// mean_m·col_sum[n]) when row_stats is given (a folded LayerNorm, see GemmEpi in common.cuh), else v. With
// row_partials (nullable output), each row's statistics per 32-column window of C for the next LayerNorm. bf16
// or f16 storage, f32 accumulation on mma.sync.m16n8k16.
//
// Tiling: 128x128x32 block tile, 256 threads = 8 warps as 2 (M) x 4 (N), warp tile 64x32 = 4x4 mma tiles.
// Operands go global -> shared through a 3-stage cp.async pipeline (16-byte chunks, zero-filled past the
// edges), shared -> registers by ldmatrix.x4. A tile row is 32 elements, 4 chunks of 16 bytes, stored with chunk
// c at c ^ ((row / 2) % 4) (gemm_chunk): the 8 rows of an ldmatrix matrix and the 2 rows × 4 chunks of each 8
// cp.async lanes then each cover all 32 banks (row padding could serve only one of the two; tests/gpu_banks.rs).
// Dynamic shared memory: GEMM_SMEM_BYTES = 49152.
// The cp.async path needs K, lda, ldw multiples of 8 and 16-byte aligned A, W; the `_unaligned` entry points
// take any sizes and strides and fill shared memory with ordinary loads instead (same pipeline).
//
// Launch: grid (ceil(N/128), ceil(M/128)), block 256, shared GEMM_SMEM_BYTES.
// LoRA hook: a rank-r update U·Vᵀ (U [M,r], V [N,r]) joins this GEMM by extending K: A' = [A | s·U],
// W' = [W | V]; the epilogue stays as is.
#include "common.cuh"

#define GEMM_BM 128
#define GEMM_BN 128
#define GEMM_BK 32
#define GEMM_LDS 32  // shared row, elements (unpadded: the chunks are swizzled)
#define GEMM_STAGES 3
#define GEMM_THREADS 256
#define GEMM_SMEM_BYTES (GEMM_STAGES * (GEMM_BM + GEMM_BN) * GEMM_LDS * 2)

// Where chunk c (8 elements) of tile row r is stored: its column in elements.
DEVI int gemm_chunk(int r, int c) { return (c ^ ((r >> 1) & 3)) * 8; }

// One 128x32 operand tile (rows [row0, row0+128) of a [rows, K] matrix, columns [k0, k0+32)) into shared.
template <class T, bool Aligned>
DEVI void gemm_load_tile(T* dst, const T* src, int ld, int rows, int K, int row0, int k0) {
    for (int c = threadIdx.x; c < GEMM_BM * (GEMM_BK / 8); c += GEMM_THREADS) {
        int r = c >> 2, kc = (c & 3) * 8;
        int gr = row0 + r, gk = k0 + kc;
        T* d = dst + r * GEMM_LDS + gemm_chunk(r, c & 3);
        if (Aligned) {
            bool ok = gr < rows && gk < K;
            cp_async_16(d, ok ? src + (long)gr * ld + gk : src, ok);
        } else {
            for (int e = 0; e < 8; ++e) {
                bool ok = gr < rows && gk + e < K;
                d[e] = ok ? src[(long)gr * ld + gk + e] : from_f32<T>(0.0f);
            }
        }
    }
}

template <class T, bool Aligned>
DEVI void gemm_body(int M, int N, int K, int lda, int ldw, int ldc, const T* A, const T* W, const GemmEpi<T>& e,
                    T* C) {
    T* smem = DYN_SMEM(T);
    T* As = smem;                                     // [STAGES][BM][LDS]
    T* Bs = smem + GEMM_STAGES * GEMM_BM * GEMM_LDS;  // [STAGES][BN][LDS]
    int bm = blockIdx.y * GEMM_BM, bn = blockIdx.x * GEMM_BN;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    // The rows this lane addresses in its ldmatrix calls are 16·i + (lane & 15) of A's tile and
    // 8·i + (lane & 7) of W's: their swizzle is lane's, (lane / 2) % 4, either way, so the element offsets of its
    // rows' chunks for the two k16 steps are fixed per lane.
    int a_hi = lane >> 4, b_hi = (lane >> 3) & 1;
    int a_row = (wm + (lane & 15)) * GEMM_LDS, b_row = (wn + (lane & 7) + (lane >> 4) * 8) * GEMM_LDS;
    int a_off[2] = {a_row + gemm_chunk(lane, a_hi), a_row + gemm_chunk(lane, 2 + a_hi)};
    int b_off[2] = {b_row + gemm_chunk(lane, b_hi), b_row + gemm_chunk(lane, 2 + b_hi)};
    float acc[4][4][4];
    UNROLL for (int i = 0; i < 4; ++i) UNROLL for (int j = 0; j < 4; ++j) UNROLL for (int e = 0; e < 4; ++e)
        acc[i][j][e] = 0.0f;

    int ktiles = ceil_div(K, GEMM_BK);
    for (int s = 0; s < GEMM_STAGES - 1; ++s) {
        if (s < ktiles) {
            gemm_load_tile<T, Aligned>(As + s * GEMM_BM * GEMM_LDS, A, lda, M, K, bm, s * GEMM_BK);
            gemm_load_tile<T, Aligned>(Bs + s * GEMM_BN * GEMM_LDS, W, ldw, N, K, bn, s * GEMM_BK);
        }
        cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<GEMM_STAGES - 2>();  // tile kt has landed (for this thread) ...
        __syncthreads();                   // ... for all threads; and stage (kt-1)%S is free again
        int pre = kt + GEMM_STAGES - 1;
        if (pre < ktiles) {
            int ps = pre % GEMM_STAGES;
            gemm_load_tile<T, Aligned>(As + ps * GEMM_BM * GEMM_LDS, A, lda, M, K, bm, pre * GEMM_BK);
            gemm_load_tile<T, Aligned>(Bs + ps * GEMM_BN * GEMM_LDS, W, ldw, N, K, bn, pre * GEMM_BK);
        }
        cp_async_commit();
        const T* as = As + (kt % GEMM_STAGES) * GEMM_BM * GEMM_LDS;
        const T* bs = Bs + (kt % GEMM_STAGES) * GEMM_BN * GEMM_LDS;
        UNROLL for (int kk = 0; kk < GEMM_BK; kk += 16) {
            u32 a[4][4], b[4][2];
            UNROLL for (int mi = 0; mi < 4; ++mi)
                ldmatrix_x4(a[mi], as + a_off[kk >> 4] + mi * 16 * GEMM_LDS);
            UNROLL for (int p = 0; p < 2; ++p) {
                u32 r[4];
                ldmatrix_x4(r, bs + b_off[kk >> 4] + p * 16 * GEMM_LDS);
                b[2 * p][0] = r[0];
                b[2 * p][1] = r[1];
                b[2 * p + 1][0] = r[2];
                b[2 * p + 1][1] = r[3];
            }
            UNROLL for (int mi = 0; mi < 4; ++mi) UNROLL for (int ni = 0; ni < 4; ++ni)
                mma_m16n8k16<T>(acc[mi][ni], a[mi], b[ni]);
        }
    }
    cp_async_wait<0>();

    int g = lane >> 2, t = lane & 3;
    // The folded LayerNorm's normalisation in a pass of its own: inside the unrolled stores below it would be
    // copied into each of their 32 instances (+20% code).
    if (e.row_stats) {
        UNROLL for (int mi = 0; mi < 4; ++mi) UNROLL for (int h = 0; h < 2; ++h) {
            int m = min(bm + wm + mi * 16 + g + h * 8, M - 1);
            float mean = e.row_stats[2 * (long)m], rstd = e.row_stats[2 * (long)m + 1];
            UNROLL for (int ni = 0; ni < 4; ++ni) UNROLL for (int j = 0; j < 2; ++j) {
                int n = min(bn + wn + ni * 8 + 2 * t + j, N - 1);
                acc[mi][ni][2 * h + j] = folded_norm(acc[mi][ni][2 * h + j], mean, rstd, e.col_sum[n]);
            }
        }
    }
    bool pairs = (ldc & 1) == 0;  // (n, n+1) with n even is then a 4-byte aligned pair
    UNROLL for (int mi = 0; mi < 4; ++mi) UNROLL for (int ni = 0; ni < 4; ++ni) UNROLL for (int h = 0; h < 2; ++h) {
        int m = bm + wm + mi * 16 + g + h * 8;
        int n = bn + wn + ni * 8 + 2 * t;
        if (m >= M) continue;
        float v0 = acc[mi][ni][2 * h], v1 = acc[mi][ni][2 * h + 1];
        T* out = C + (long)m * ldc + n;
        if (pairs && n + 1 < N) {
            store_pair(out, gemm_epilogue_terms(v0, m, n, e), gemm_epilogue_terms(v1, m, n + 1, e));
        } else {
            if (n < N) out[0] = from_f32<T>(gemm_epilogue_terms(v0, m, n, e));
            if (n + 1 < N) out[1] = from_f32<T>(gemm_epilogue_terms(v1, m, n + 1, e));
        }
    }
    if (e.row_partials) {
        // Each row's statistics over this warp's 32 columns (the 4 lanes of a row hold 8 each), from the values
        // as this thread stored them (read back: its own writes).
        compiler_barrier();
        int w0 = bn + wn, parts = ceil_div(N, 32), count = min(32, N - w0);
        UNROLL for (int mi = 0; mi < 4; ++mi) UNROLL for (int h = 0; h < 2; ++h) {
            int m = bm + wm + mi * 16 + g + h * 8;
            float v[8];
            unsigned valid = 0;
            UNROLL for (int ni = 0; ni < 4; ++ni) UNROLL for (int j = 0; j < 2; ++j) {
                int n = w0 + ni * 8 + 2 * t + j;
                bool ok = m < M && n < N;
                v[2 * ni + j] = ok ? to_f32(C[(long)m * ldc + n]) : 0.0f;
                valid |= (unsigned)ok << (2 * ni + j);
            }
            row_partial_stats<4>(v, valid, count, m < M, e.row_partials + 2 * ((long)m * parts + w0 / 32));
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) gemm_bf16(GEMM_PARAMS(bf16_t)) {
    gemm_body<bf16_t, true>(GEMM_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_f16(GEMM_PARAMS(f16_t)) {
    gemm_body<f16_t, true>(GEMM_ARGS(f16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_unaligned_bf16(GEMM_PARAMS(bf16_t)) {
    gemm_body<bf16_t, false>(GEMM_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(256) gemm_unaligned_f16(GEMM_PARAMS(f16_t)) {
    gemm_body<f16_t, false>(GEMM_ARGS(f16_t));
}
