// kernels/elementwise.cu — element-wise kernels: activations, add (also f32 + 16-bit), scale, dtype conversion.
// Grid-stride loops over n elements: launch any grid (the launchers use ceil(n/256) blocks, at most 4096,
// of 256 threads). Math in f32; storage bf16, f16 or f32.
#include "common.cuh"

template <class T>
DEVI void gelu_body(int n, const T* __restrict__ x, T* __restrict__ y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = from_f32<T>(gelu_erf(to_f32(x[i])));
}
template <class T>
DEVI void quick_gelu_body(int n, const T* __restrict__ x, T* __restrict__ y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = from_f32<T>(quick_gelu(to_f32(x[i])));
}
template <class T>
DEVI void tanh_body(int n, const T* __restrict__ x, T* __restrict__ y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = from_f32<T>(tanhf(to_f32(x[i])));
}
template <class T, class B>
DEVI void add_body(int n, const T* __restrict__ a, const B* __restrict__ b, T* __restrict__ y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}
template <class T>
DEVI void scale_body(int n, const T* __restrict__ x, T* __restrict__ y, float s) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = from_f32<T>(to_f32(x[i]) * s);
}
template <class S, class D>
DEVI void cast_body(int n, const S* __restrict__ x, D* __restrict__ y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = from_f32<D>(to_f32(x[i]));
}

// y = gelu(x) with the exact erf form: 0.5·x·(1 + erf(x/√2)).
extern "C" __global__ void gelu_bf16(int n, const bf16_t* x, bf16_t* y) { gelu_body(n, x, y); }
extern "C" __global__ void gelu_f16(int n, const f16_t* x, f16_t* y) { gelu_body(n, x, y); }
extern "C" __global__ void gelu_f32(int n, const float* x, float* y) { gelu_body(n, x, y); }

// y = tanh(x) (ViT's pooler).
extern "C" __global__ void tanh_bf16(int n, const bf16_t* x, bf16_t* y) { tanh_body(n, x, y); }
extern "C" __global__ void tanh_f16(int n, const f16_t* x, f16_t* y) { tanh_body(n, x, y); }
extern "C" __global__ void tanh_f32(int n, const float* x, float* y) { tanh_body(n, x, y); }

// y = x·sigmoid(1.702·x) (CLIP's quick_gelu).
extern "C" __global__ void quick_gelu_bf16(int n, const bf16_t* x, bf16_t* y) { quick_gelu_body(n, x, y); }
extern "C" __global__ void quick_gelu_f16(int n, const f16_t* x, f16_t* y) { quick_gelu_body(n, x, y); }
extern "C" __global__ void quick_gelu_f32(int n, const float* x, float* y) { quick_gelu_body(n, x, y); }

// y = a + b.
extern "C" __global__ void add_bf16(int n, const bf16_t* a, const bf16_t* b, bf16_t* y) { add_body(n, a, b, y); }
extern "C" __global__ void add_f16(int n, const f16_t* a, const f16_t* b, f16_t* y) { add_body(n, a, b, y); }
extern "C" __global__ void add_f32(int n, const float* a, const float* b, float* y) { add_body(n, a, b, y); }
// y = a + b with a, y in f32 and b in 16-bit storage: a block's output added to an f32 residual stream.
extern "C" __global__ void add_f32_bf16(int n, const float* a, const bf16_t* b, float* y) { add_body(n, a, b, y); }
extern "C" __global__ void add_f32_f16(int n, const float* a, const f16_t* b, float* y) { add_body(n, a, b, y); }

// y = s·x.
extern "C" __global__ void scale_bf16(int n, const bf16_t* x, bf16_t* y, float s) { scale_body(n, x, y, s); }
extern "C" __global__ void scale_f16(int n, const f16_t* x, f16_t* y, float s) { scale_body(n, x, y, s); }
extern "C" __global__ void scale_f32(int n, const float* x, float* y, float s) { scale_body(n, x, y, s); }

// y = x converted (round to nearest even).
extern "C" __global__ void cast_f32_bf16(int n, const float* x, bf16_t* y) { cast_body(n, x, y); }
extern "C" __global__ void cast_bf16_f32(int n, const bf16_t* x, float* y) { cast_body(n, x, y); }
extern "C" __global__ void cast_f32_f16(int n, const float* x, f16_t* y) { cast_body(n, x, y); }
extern "C" __global__ void cast_f16_f32(int n, const f16_t* x, float* y) { cast_body(n, x, y); }
extern "C" __global__ void cast_bf16_f16(int n, const bf16_t* x, f16_t* y) { cast_body(n, x, y); }
extern "C" __global__ void cast_f16_bf16(int n, const f16_t* x, bf16_t* y) { cast_body(n, x, y); }
