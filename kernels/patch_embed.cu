// kernels/patch_embed.cu — im2col for the patch embedding (a convolution with stride = kernel = P), so the
// embedding becomes one GEMM: tokens[b·nh·nw + py·nw + px, :] = cols[…, :] · Wᵀ with W = conv weight viewed as
// [dim, C·P·P] (PyTorch's [dim, C, P, P] layout, flattened in (c, ky, kx) order).
//
// img: [B, C, Hi, Wi] f32 (preprocessed pixels), cols: [B·nh·nw, ldc] in the storage type, nh = Hi / P,
// nw = Wi / P (a remainder of rows/columns is dropped, as the strided convolution does); columns C·P·P … ldc − 1
// are zero (a row stride padded to a multiple of 8 keeps the GEMM on its aligned kernels).
// Grid-stride over every element of cols: any grid, 256 threads a block.
#include "common.cuh"

template <class T>
DEVI void patch_im2col_body(int B, int C, int Hi, int Wi, int P, int ldc, const float* __restrict__ img,
                            T* __restrict__ cols) {
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
