// kernels/layernorm.cu — LayerNorm over the last dimension; statistics in f32 with a two-pass (mean, then
// centred variance) reduction, so large means do not cancel.
//   layernorm_warp_*: one warp per row, the row held in registers and read once with 16-byte loads; needs
//     16-bit storage, cols % 8 == 0, cols <= 1024 and 16-byte aligned x, gamma, beta, y. Blocks of 128 threads
//     (4 rows): grid ceil(rows / 4). The transformer widths (384, 768, 1024) take this path.
//   layernorm_fwd_*: any shape and dtype; one block per row, blockDim.x a multiple of 32 (launcher: 128 for
//     cols <= 1024, else 256). layernorm_fwd_f32_<T> reads an f32 residual stream and writes T (as gamma, beta).
//   layernorm_stats_{warp,fwd}_*: the same two kernels (same launch) writing each row's f32 (mean, rstd) pair
//     instead of y, for a GEMM that folds the LayerNorm into its epilogue (GemmEpi in common.cuh).
//   layernorm_stats_merge_f32: the same pairs from the partial statistics a GEMM's epilogue wrote for its
//     output rows (GemmEpi::row_partials), so the LayerNorm after a residual GEMM need not read x again.
#include "common.cuh"

// Mean and 1/sqrt(var + eps) of row xr, by the whole block.
template <class X>
DEVI void block_row_stats(const X* __restrict__ xr, int cols, float eps, float* scratch, float& mean, float& rstd) {
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += to_f32(xr[j]);
    mean = block_sum(s, scratch) / cols;
    float v = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float d = to_f32(xr[j]) - mean;
        v += d * d;
    }
    rstd = rsqrtf(block_sum(v, scratch) / cols + eps);
}

template <class X, class T>
DEVI void layernorm_body(int rows, int cols, const X* __restrict__ x, const T* __restrict__ gamma,
                         const T* __restrict__ beta, T* __restrict__ y, float eps) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    const X* xr = x + (long)row * cols;
    T* yr = y + (long)row * cols;
    float mean, rstd;
    block_row_stats(xr, cols, eps, scratch, mean, rstd);
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        yr[j] = from_f32<T>((to_f32(xr[j]) - mean) * rstd * to_f32(gamma[j]) + to_f32(beta[j]));
}

// y[r,:] = (x[r,:] − mean) / sqrt(var + eps) · gamma + beta, for r < rows; x, y: [rows, cols]; gamma, beta: [cols].
extern "C" __global__ void layernorm_fwd_bf16(int rows, int cols, const bf16_t* x, const bf16_t* gamma,
                                              const bf16_t* beta, bf16_t* y, float eps) {
    layernorm_body(rows, cols, x, gamma, beta, y, eps);
}
extern "C" __global__ void layernorm_fwd_f16(int rows, int cols, const f16_t* x, const f16_t* gamma,
                                             const f16_t* beta, f16_t* y, float eps) {
    layernorm_body(rows, cols, x, gamma, beta, y, eps);
}
extern "C" __global__ void layernorm_fwd_f32(int rows, int cols, const float* x, const float* gamma,
                                             const float* beta, float* y, float eps) {
    layernorm_body(rows, cols, x, gamma, beta, y, eps);
}
// x in f32 (the residual stream of CLIP's text tower), gamma, beta and y in 16-bit storage.
extern "C" __global__ void layernorm_fwd_f32_bf16(int rows, int cols, const float* x, const bf16_t* gamma,
                                                  const bf16_t* beta, bf16_t* y, float eps) {
    layernorm_body(rows, cols, x, gamma, beta, y, eps);
}
extern "C" __global__ void layernorm_fwd_f32_f16(int rows, int cols, const float* x, const f16_t* gamma,
                                                 const f16_t* beta, f16_t* y, float eps) {
    layernorm_body(rows, cols, x, gamma, beta, y, eps);
}

#define LNW_CHUNKS 4  // chunks of 8 per lane: cols <= 32 · 8 · 4 = 1024

// 8 consecutive 16-bit values at p (16-byte aligned) as f32.
template <class T>
DEVI void lnw_load8(float (&v)[8], const T* p) {
    u32 r[4];
    ld_global_16(r, p);
    UNROLL for (int e = 0; e < 4; ++e) {
        v[2 * e] = lo_f32<T>(r[e]);
        v[2 * e + 1] = hi_f32<T>(r[e]);
    }
}

// Row xr into this lane's registers (chunk c holds columns (32·c + lane)·8 ..), its mean and 1/sqrt(var + eps).
template <class T>
DEVI void lnw_row_stats(float (&v)[LNW_CHUNKS][8], const T* xr, int cols, float eps, float& mean, float& rstd) {
    int lane = threadIdx.x & 31;
    float s = 0.0f;
    UNROLL for (int c = 0; c < LNW_CHUNKS; ++c) {
        int j = (c * 32 + lane) * 8;
        if (j < cols) {
            lnw_load8<T>(v[c], xr + j);
            UNROLL for (int e = 0; e < 8; ++e) s += v[c][e];
        }
    }
    mean = warp_sum(s) / cols;
    float q = 0.0f;
    UNROLL for (int c = 0; c < LNW_CHUNKS; ++c) {
        if ((c * 32 + lane) * 8 < cols) {
            UNROLL for (int e = 0; e < 8; ++e) {
                float d = v[c][e] - mean;
                q += d * d;
            }
        }
    }
    rstd = rsqrtf(warp_sum(q) / cols + eps);
}

template <class T>
DEVI void layernorm_warp_body(int rows, int cols, const T* x, const T* gamma, const T* beta, T* y, float eps) {
    int lane = threadIdx.x & 31;
    long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // the whole warp leaves together
    T* yr = y + row * cols;
    float v[LNW_CHUNKS][8], mean, rstd;
    lnw_row_stats<T>(v, x + row * cols, cols, eps, mean, rstd);
    UNROLL for (int c = 0; c < LNW_CHUNKS; ++c) {
        int j = (c * 32 + lane) * 8;
        if (j < cols) {
            float g[8], b[8];
            lnw_load8<T>(g, gamma + j);
            lnw_load8<T>(b, beta + j);
            u32 r[4];
            UNROLL for (int e = 0; e < 4; ++e)
                r[e] = pack2<T>((v[c][2 * e] - mean) * rstd * g[2 * e] + b[2 * e],
                                (v[c][2 * e + 1] - mean) * rstd * g[2 * e + 1] + b[2 * e + 1]);
            st_global_16(yr + j, r);
        }
    }
}

extern "C" __global__ void layernorm_warp_bf16(int rows, int cols, const bf16_t* x, const bf16_t* gamma,
                                               const bf16_t* beta, bf16_t* y, float eps) {
    layernorm_warp_body(rows, cols, x, gamma, beta, y, eps);
}
extern "C" __global__ void layernorm_warp_f16(int rows, int cols, const f16_t* x, const f16_t* gamma,
                                              const f16_t* beta, f16_t* y, float eps) {
    layernorm_warp_body(rows, cols, x, gamma, beta, y, eps);
}

// stats[2r], stats[2r + 1] = mean, 1/sqrt(var + eps) of row r of x [rows, cols].
template <class T>
DEVI void layernorm_stats_warp_body(int rows, int cols, const T* x, float* stats, float eps) {
    long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    float v[LNW_CHUNKS][8], mean, rstd;
    lnw_row_stats<T>(v, x + row * cols, cols, eps, mean, rstd);
    if ((threadIdx.x & 31) == 0) stats[2 * row] = mean, stats[2 * row + 1] = rstd;
}
template <class T>
DEVI void layernorm_stats_fwd_body(int rows, int cols, const T* x, float* stats, float eps) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    float mean, rstd;
    block_row_stats(x + (long)row * cols, cols, eps, scratch, mean, rstd);
    if (threadIdx.x == 0) stats[2 * (long)row] = mean, stats[2 * (long)row + 1] = rstd;
}

extern "C" __global__ void layernorm_stats_warp_bf16(int rows, int cols, const bf16_t* x, float* stats, float eps) {
    layernorm_stats_warp_body(rows, cols, x, stats, eps);
}
extern "C" __global__ void layernorm_stats_warp_f16(int rows, int cols, const f16_t* x, float* stats, float eps) {
    layernorm_stats_warp_body(rows, cols, x, stats, eps);
}
extern "C" __global__ void layernorm_stats_fwd_bf16(int rows, int cols, const bf16_t* x, float* stats, float eps) {
    layernorm_stats_fwd_body(rows, cols, x, stats, eps);
}
extern "C" __global__ void layernorm_stats_fwd_f16(int rows, int cols, const f16_t* x, float* stats, float eps) {
    layernorm_stats_fwd_body(rows, cols, x, stats, eps);
}

// stats[r] = (mean, rstd) of row r of a [rows, cols] matrix from its partial statistics, written by a GEMM's
// epilogue (GemmEpi::row_partials in common.cuh): per window of `width` columns (the last one shorter), the
// window's mean and centred sum of squares. Combined pairwise (Chan, Golub and LeVeque), which stays exact when
// the mean is large. One thread per row: grid ceil(rows / 128), block 128.
extern "C" __global__ void layernorm_stats_merge_f32(int rows, int cols, int width, const float* partials,
                                                     float* stats, float eps) {
    long row = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    int parts = ceil_div(cols, width);
    const float* p = partials + 2 * row * parts;
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;
    for (int i = 0; i < parts; ++i) {
        float nb = (float)min(width, cols - i * width), d = p[2 * i] - mean, total = n + nb;
        mean += d * (nb / total);
        m2 += p[2 * i + 1] + d * d * (n * nb / total);
        n = total;
    }
    stats[2 * row] = mean;
    stats[2 * row + 1] = rsqrtf(m2 / cols + eps);
}
