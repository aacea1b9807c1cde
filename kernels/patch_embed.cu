// kernels/patch_embed.cu — im2col for the patch embedding (a convolution with stride = kernel = P), so the
// embedding becomes one GEMM: tokens[b·nh·nw + py·nw + px, :] = cols[…, :] · Wᵀ with W = conv weight viewed as
// [dim, C·P·P] (PyTorch's [dim, C, P, P] layout, flattened in (c, ky, kx) order).
//
// img: [B, C, Hi, Wi] f32 (preprocessed pixels), cols: [B·nh·nw, ldc] in the storage type, nh = Hi / P,
// nw = Wi / P (a remainder of rows/columns is dropped, as the strided convolution does); columns C·P·P … ldc − 1
// are zero (a row stride padded to a multiple of 8 keeps the GEMM on its aligned kernels).
// Grid-stride over cols, 8 consecutive columns a thread when ldc is a multiple of 8 and cols 16-byte aligned (one
// vector store; the index arithmetic, integer divisions, once per 8 values), else one element a thread: any grid
// (the launcher sizes it by elements), 256 threads a block.
#include "common.cuh"

// Columns 8j … 8j+7 of every row: (c, ky, kx) found once, then stepped along the patch.
template <class T>
DEVI void patch_im2col_chunks(int B, int C, int Hi, int Wi, int P, int ldc, const float* __restrict__ img,
                              T* __restrict__ cols) {
    int nh = Hi / P, nw = Wi / P, K = C * P * P, chunks = ldc / 8;
    long total = (long)B * nh * nw * chunks;
    for (long u = blockIdx.x * (long)blockDim.x + threadIdx.x; u < total; u += (long)gridDim.x * blockDim.x) {
        long tok = u / chunks;
        int k0 = (int)(u - tok * chunks) * 8;
        int b = (int)(tok / (nh * nw)), rest = (int)(tok - (long)b * nh * nw), py = rest / nw, px = rest - py * nw;
        int c = k0 / (P * P), r = k0 - c * P * P, ky = r / P, kx = r - ky * P;
        const float* row = img + (((long)b * C + c) * Hi + py * P + ky) * Wi + px * P;  // patch row (c, ky)
        float v[8];
        UNROLL for (int e = 0; e < 8; ++e) {
            v[e] = k0 + e < K ? row[kx] : 0.0f;
            if (++kx == P) {
                kx = 0, row += Wi;                                 // next row of the patch,
                if (++ky == P) ky = 0, row += (long)(Hi - P) * Wi;  // or the first of the next channel
            }
        }
        store8<T>(cols + u * 8, v);
    }
}

template <class T>
DEVI void patch_im2col_body(int B, int C, int Hi, int Wi, int P, int ldc, const float* __restrict__ img,
                            T* __restrict__ cols) {
    if (ldc % 8 == 0 && aligned16(cols)) {
        patch_im2col_chunks(B, C, Hi, Wi, P, ldc, img, cols);
        return;
    }
    int nh = Hi / P, nw = Wi / P, K = C * P * P;
    long total = (long)B * nh * nw * ldc;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int kcol = (int)(i % ldc);
        long tok = i / ldc;
        float v = 0.0f;
        if (kcol < K) {
            int px = (int)(tok % nw), py = (int)((tok / nw) % nh), b = (int)(tok / ((long)nw * nh));
            int kx = kcol % P, ky = (kcol / P) % P, c = kcol / (P * P);
            v = img[(((long)b * C + c) * Hi + py * P + ky) * Wi + px * P + kx];
        }
        cols[i] = from_f32<T>(v);
    }
}

// cols = im2col(img) as above.
extern "C" __global__ void patch_im2col_bf16(int B, int C, int Hi, int Wi, int P, int ldc, const float* img, bf16_t* cols) {
    patch_im2col_body(B, C, Hi, Wi, P, ldc, img, cols);
}
extern "C" __global__ void patch_im2col_f16(int B, int C, int Hi, int Wi, int P, int ldc, const float* img, f16_t* cols) {
    patch_im2col_body(B, C, Hi, Wi, P, ldc, img, cols);
}
extern "C" __global__ void patch_im2col_f32(int B, int C, int Hi, int Wi, int P, int ldc, const float* img, float* cols) {
    patch_im2col_body(B, C, Hi, Wi, P, ldc, img, cols);
}
