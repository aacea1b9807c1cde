// kernels/pool.cu — token pooling for the heads: gather one row per batch item (CLS token, CLIP's EOS token)
// and the mean over a range of tokens (DINOv2's mean of patch tokens). f32 math.
// Grid-stride over the B·D outputs: any grid, 256 threads a block.
#include "common.cuh"

// y[b, :] = x[b, idx[b], :]; x: [B, T, D], idx: [B] (each in 0 … T−1, clamped), y: [B, D].
template <class T>
DEVI void gather_rows_body(int B, int Tn, int D, const T* __restrict__ x, const int* __restrict__ idx,
                           T* __restrict__ y) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (long)B * D; i += (long)gridDim.x * blockDim.x) {
        int b = (int)(i / D), d = (int)(i % D);
        int t = min(max(idx[b], 0), Tn - 1);
        y[i] = x[((long)b * Tn + t) * D + d];
    }
}

// y[b, :] = mean over t in [start, end) of x[b, t, :]; x: [B, T, D], y: [B, D].
template <class T>
DEVI void mean_tokens_body(int B, int Tn, int D, int start, int end, const T* __restrict__ x, T* __restrict__ y) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (long)B * D; i += (long)gridDim.x * blockDim.x) {
        int b = (int)(i / D), d = (int)(i % D);
        float s = 0.0f;
        for (int t = start; t < end; ++t) s += to_f32(x[((long)b * Tn + t) * D + d]);
        y[i] = from_f32<T>(end > start ? s / (end - start) : 0.0f);
    }
}

extern "C" __global__ void gather_rows_bf16(int B, int Tn, int D, const bf16_t* x, const int* idx, bf16_t* y) {
    gather_rows_body(B, Tn, D, x, idx, y);
}
extern "C" __global__ void gather_rows_f16(int B, int Tn, int D, const f16_t* x, const int* idx, f16_t* y) {
    gather_rows_body(B, Tn, D, x, idx, y);
}
extern "C" __global__ void gather_rows_f32(int B, int Tn, int D, const float* x, const int* idx, float* y) {
    gather_rows_body(B, Tn, D, x, idx, y);
}
extern "C" __global__ void mean_tokens_bf16(int B, int Tn, int D, int start, int end, const bf16_t* x, bf16_t* y) {
    mean_tokens_body(B, Tn, D, start, end, x, y);
}
extern "C" __global__ void mean_tokens_f16(int B, int Tn, int D, int start, int end, const f16_t* x, f16_t* y) {
    mean_tokens_body(B, Tn, D, start, end, x, y);
}
extern "C" __global__ void mean_tokens_f32(int B, int Tn, int D, int start, int end, const float* x, float* y) {
    mean_tokens_body(B, Tn, D, start, end, x, y);
}
