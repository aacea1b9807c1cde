// kernels/softmax.cu — row softmax with scale and an optional causal mask; row argmax.
// One block per row, blockDim.x a multiple of 32 (launchers: 128). f32 max / sum.
#include "common.cuh"

// Rows are [.., q_len, cols] attention-score rows: row r is query q = r % q_len; with `causal`, column j is
// kept only when j <= q + (cols − q_len) (keys aligned at the end) and masked columns become 0.
template <class T>
DEVI void softmax_body(int rows, int cols, int q_len, const T* __restrict__ x, T* __restrict__ y, float scale,
                       int causal) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    int limit = causal ? (row % q_len) + (cols - q_len) + 1 : cols;  // columns < limit are kept
    if (limit > cols) limit = cols;
    const T* xr = x + (long)row * cols;
    T* yr = y + (long)row * cols;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < limit; j += blockDim.x) m = fmaxf(m, to_f32(xr[j]) * scale);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int j = threadIdx.x; j < limit; j += blockDim.x) s += expf(to_f32(xr[j]) * scale - m);
    float inv = 1.0f / block_sum(s, scratch);
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        yr[j] = from_f32<T>(j < limit ? expf(to_f32(xr[j]) * scale - m) * inv : 0.0f);
}

// y[r,:] = softmax(scale · x[r,:]) (masked as above when causal != 0); x, y: [rows, cols].
extern "C" __global__ void softmax_bf16(int rows, int cols, int q_len, const bf16_t* x, bf16_t* y, float scale,
                                        int causal) {
    softmax_body(rows, cols, q_len, x, y, scale, causal);
}
extern "C" __global__ void softmax_f16(int rows, int cols, int q_len, const f16_t* x, f16_t* y, float scale,
                                       int causal) {
    softmax_body(rows, cols, q_len, x, y, scale, causal);
}
extern "C" __global__ void softmax_f32(int rows, int cols, int q_len, const float* x, float* y, float scale,
                                       int causal) {
    softmax_body(rows, cols, q_len, x, y, scale, causal);
}

// idx[r] = argmax_j x[r, j] (lowest j on ties); x: [rows, cols] f32. Blocks of 32 threads, one row each.
extern "C" __global__ void argmax_f32(int rows, int cols, const float* x, int* idx) {
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (long)row * cols;
    float best = NEG_INF;
    int bi = cols;
    for (int j = threadIdx.x; j < cols; j += 32) {
        float v = xr[j];
        if (v > best || (v == best && j < bi)) {
            best = v;
            bi = j;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) {
            best = ov;
            bi = oi;
        }
    }
    if (threadIdx.x == 0) idx[row] = bi < cols ? bi : 0;
}
