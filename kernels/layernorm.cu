// kernels/layernorm.cu — LayerNorm over the last dimension.
// One block per row, blockDim.x a multiple of 32 (launchers: 128 for cols <= 1024, else 256); statistics in
// f32 with a two-pass (mean, then centred variance) reduction, so large means do not cancel.
#include "common.cuh"

template <class T>
DEVI void layernorm_body(int rows, int cols, const T* __restrict__ x, const T* __restrict__ gamma,
                         const T* __restrict__ beta, T* __restrict__ y, float eps) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    const T* xr = x + (long)row * cols;
    T* yr = y + (long)row * cols;
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += to_f32(xr[j]);
    float mean = block_sum(s, scratch) / cols;
    float v = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float d = to_f32(xr[j]) - mean;
        v += d * d;
    }
    float rstd = rsqrtf(block_sum(v, scratch) / cols + eps);
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
