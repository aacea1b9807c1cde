// kernels/tokens.cu — token assembly and row utilities around the transformer blocks: prepend the CLS token
// and add position embeddings (vision), look up token embeddings (text), L2-normalise feature rows, and copy
// columns into a wider buffer (feature concatenation). f32 math, storage bf16/f16/f32.
// Launch: assemble_tokens, embedding, copy_cols: grid-stride over their outputs, any grid, 256 threads a block.
// l2_normalize: one block per row, blockDim.x a multiple of 32 (128).
#include "common.cuh"

#define TOK_FLT_MIN 1.17549435e-38f

// y[b, 0, :] = cls + pos[0]; y[b, 1 + r, :] = reg[r] (r < R, DINOv2's register tokens, no position);
// y[b, 1 + R + t, :] = patches[b, t, :] + pos[1 + t] (t < N).
// patches: [B, N, D], cls: [D], pos: [N+1, D], reg: [R, D] (null when R = 0), y: [B, 1+R+N, D]; B·(1+R+N)·D < 2^31
// (the launcher checks). With D a multiple of 8 and aligned pointers, 8 values a thread in 16-byte vectors (the
// row arithmetic once per 8), else one.
template <class T>
DEVI void assemble_tokens_chunks(int B, int N, int R, int D, const T* __restrict__ patches, const T* __restrict__ cls,
                                 const T* __restrict__ pos, const T* __restrict__ reg, T* __restrict__ y) {
    int L = 1 + R + N, chunks = D / 8, total = B * L * chunks;
    for (int u = blockIdx.x * blockDim.x + threadIdx.x; u < total; u += gridDim.x * blockDim.x) {
        int row = u / chunks, d = (u - row * chunks) * 8, b = row / L, t = row - b * L;
        float v[8], w[8];
        if (t == 0) load8(v, cls + d), load8(w, pos + d);
        else if (t <= R) load8(v, reg + (long)(t - 1) * D + d);
        else load8(v, patches + ((long)b * N + t - 1 - R) * D + d), load8(w, pos + (long)(t - R) * D + d);
        if (t == 0 || t > R) UNROLL for (int e = 0; e < 8; ++e) v[e] += w[e];
        store8(y + (long)u * 8, v);
    }
}

template <class T>
DEVI void assemble_tokens_body(int B, int N, int R, int D, const T* __restrict__ patches, const T* __restrict__ cls,
                               const T* __restrict__ pos, const T* __restrict__ reg, T* __restrict__ y) {
    if (D % 8 == 0 && aligned16(patches, cls, pos, reg, y)) {
        assemble_tokens_chunks(B, N, R, D, patches, cls, pos, reg, y);
        return;
    }
    int L = 1 + R + N;
    long total = (long)B * L * D;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int d = (int)(i % D);
        long bt = i / D;
        int t = (int)(bt % L);
        long b = bt / L;
        float v;
        if (t == 0) v = to_f32(cls[d]) + to_f32(pos[d]);
        else if (t <= R) v = to_f32(reg[(long)(t - 1) * D + d]);
        else v = to_f32(patches[(b * N + t - 1 - R) * D + d]) + to_f32(pos[(long)(t - R) * D + d]);
        y[i] = from_f32<T>(v);
    }
}

// y[r, :] = table[ids[r], :] + pos[r % Tn, :]; an id outside 0 … vocab−1 writes NaN in its row (never read).
// ids: [rows] int, table: [vocab, D], pos: [>= Tn, D], y: [rows, D] (Y = f32 starts an f32 residual stream).
template <class T, class Y>
DEVI void embedding_body(int rows, int Tn, int D, int vocab, const int* __restrict__ ids,
                         const T* __restrict__ table, const T* __restrict__ pos, Y* __restrict__ y) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (long)rows * D; i += (long)gridDim.x * blockDim.x) {
        int r = (int)(i / D), d = (int)(i % D);
        int id = ids[r];
        float v = __int_as_float(0x7fc00000);  // NaN
        if (id >= 0 && id < vocab) v = to_f32(table[(long)id * D + d]) + to_f32(pos[(long)(r % Tn) * D + d]);
        y[i] = from_f32<Y>(v);
    }
}

// y[r, :] = x[r, :] / max(‖x[r, :]‖₂, FLT_MIN); x, y: [rows, D]. One block per row.
template <class T>
DEVI void l2_normalize_body(int rows, int D, const T* __restrict__ x, T* __restrict__ y) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    if (row >= rows) return;
    const T* xr = x + (long)row * D;
    T* yr = y + (long)row * D;
    float s = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float v = to_f32(xr[j]);
        s += v * v;
    }
    float inv = 1.0f / fmaxf(sqrtf(block_sum(s, scratch)), TOK_FLT_MIN);
    for (int j = threadIdx.x; j < D; j += blockDim.x) yr[j] = from_f32<T>(to_f32(xr[j]) * inv);
}

// y[r, offset + j] = x[r, j] for j < d_src; x: [rows, d_src], y: [rows, d_dst] (offset + d_src <= d_dst).
template <class T>
DEVI void copy_cols_body(int rows, int d_src, int d_dst, int offset, const T* __restrict__ x, T* __restrict__ y) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (long)rows * d_src;
         i += (long)gridDim.x * blockDim.x) {
        long r = i / d_src;
        int j = (int)(i % d_src);
        y[r * d_dst + offset + j] = x[i];
    }
}

extern "C" __global__ void assemble_tokens_bf16(int B, int N, int R, int D, const bf16_t* patches, const bf16_t* cls,
        const bf16_t* pos, const bf16_t* reg, bf16_t* y) {
    assemble_tokens_body(B, N, R, D, patches, cls, pos, reg, y);
}
extern "C" __global__ void assemble_tokens_f16(int B, int N, int R, int D, const f16_t* patches, const f16_t* cls,
        const f16_t* pos, const f16_t* reg, f16_t* y) {
    assemble_tokens_body(B, N, R, D, patches, cls, pos, reg, y);
}
extern "C" __global__ void assemble_tokens_f32(int B, int N, int R, int D, const float* patches, const float* cls,
        const float* pos, const float* reg, float* y) {
    assemble_tokens_body(B, N, R, D, patches, cls, pos, reg, y);
}
extern "C" __global__ void embedding_bf16(int rows, int Tn, int D, int vocab, const int* ids, const bf16_t* table,
                                          const bf16_t* pos, bf16_t* y) {
    embedding_body(rows, Tn, D, vocab, ids, table, pos, y);
}
extern "C" __global__ void embedding_f16(int rows, int Tn, int D, int vocab, const int* ids, const f16_t* table,
                                         const f16_t* pos, f16_t* y) {
    embedding_body(rows, Tn, D, vocab, ids, table, pos, y);
}
extern "C" __global__ void embedding_f32(int rows, int Tn, int D, int vocab, const int* ids, const float* table,
                                         const float* pos, float* y) {
    embedding_body(rows, Tn, D, vocab, ids, table, pos, y);
}
extern "C" __global__ void embedding_bf16_f32(int rows, int Tn, int D, int vocab, const int* ids, const bf16_t* table,
                                              const bf16_t* pos, float* y) {
    embedding_body(rows, Tn, D, vocab, ids, table, pos, y);
}
extern "C" __global__ void embedding_f16_f32(int rows, int Tn, int D, int vocab, const int* ids, const f16_t* table,
                                             const f16_t* pos, float* y) {
    embedding_body(rows, Tn, D, vocab, ids, table, pos, y);
}
extern "C" __global__ void l2_normalize_bf16(int rows, int D, const bf16_t* x, bf16_t* y) {
    l2_normalize_body(rows, D, x, y);
}
extern "C" __global__ void l2_normalize_f16(int rows, int D, const f16_t* x, f16_t* y) {
    l2_normalize_body(rows, D, x, y);
}
extern "C" __global__ void l2_normalize_f32(int rows, int D, const float* x, float* y) {
    l2_normalize_body(rows, D, x, y);
}
extern "C" __global__ void copy_cols_bf16(int rows, int d_src, int d_dst, int offset, const bf16_t* x, bf16_t* y) {
    copy_cols_body(rows, d_src, d_dst, offset, x, y);
}
extern "C" __global__ void copy_cols_f16(int rows, int d_src, int d_dst, int offset, const f16_t* x, f16_t* y) {
    copy_cols_body(rows, d_src, d_dst, offset, x, y);
}
extern "C" __global__ void copy_cols_f32(int rows, int d_src, int d_dst, int offset, const float* x, float* y) {
    copy_cols_body(rows, d_src, d_dst, offset, x, y);
}
