// kernels/interp.cu — bicubic resampling of a position-embedding grid, with PyTorch's semantics of
// F.interpolate(mode="bicubic", align_corners=False) on [1, D, Hi, Wi]:
//   source coordinate s = (o + 0.5)·scale − 0.5 with scale = in/out (or 1/scale_factor when the caller passed
//   a scale factor), 4 taps at floor(s)−1 … floor(s)+2 clamped to the edge, Keys' cubic with a = −0.75;
// and with `antialias` (transformers' DINOv2 uses it), PyTorch's _upsample_bicubic2d_aa: centre c = (o + 0.5)·scale,
//   support = 2·max(scale, 1), taps j in [max(trunc(c − support + 0.5), 0), min(trunc(c + support + 0.5), in)),
//   weight = cubic_{a=−0.5}((j − c + 0.5) / max(scale, 1)), normalised to sum 1 (separately per axis).
//
// x: [Hi, Wi, D] channels-last (as a ViT stores its position embeddings, [1 + Hi·Wi, D] minus the class token),
// y: [Ho, Wo, D]. f32 math. Grid-stride over Ho·Wo·D: any grid, 256 threads a block.
#include "common.cuh"

DEVI float cubic_weight(float x, float a) {
    x = fabsf(x);
    if (x < 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    if (x < 2.0f) return (((x - 5.0f) * x + 8.0f) * x - 4.0f) * a;
    return 0.0f;
}

// Taps of output index o along an axis of length n: first index, count, and weight of tap i (normalised).
struct Taps {
    int first, count;
    float center, inv, norm, a;
    bool aa;
};

DEVI Taps make_taps(int o, int n, float scale, bool aa) {
    Taps t;
    t.aa = aa;
    if (aa) {
        float support = scale >= 1.0f ? 2.0f * scale : 2.0f;
        t.center = scale * (o + 0.5f);
        t.inv = scale >= 1.0f ? 1.0f / scale : 1.0f;
        t.a = -0.5f;
        t.first = max((int)(t.center - support + 0.5f), 0);
        t.count = min((int)(t.center + support + 0.5f), n) - t.first;
        float s = 0.0f;
        for (int i = 0; i < t.count; ++i) s += cubic_weight((t.first + i - t.center + 0.5f) * t.inv, t.a);
        t.norm = s != 0.0f ? 1.0f / s : 0.0f;
    } else {
        float src = (o + 0.5f) * scale - 0.5f;
        float f = floorf(src);
        t.first = (int)f - 1;
        t.count = 4;
        t.center = src - f;  // fractional part
        t.a = -0.75f;
        t.inv = 1.0f;
        t.norm = 1.0f;
    }
    return t;
}

DEVI float tap_weight(const Taps& t, int i) {
    if (t.aa) return cubic_weight((t.first + i - t.center + 0.5f) * t.inv, t.a) * t.norm;
    return cubic_weight(t.center + 1.0f - i, t.a);  // distances 1+f, f, 1−f, 2−f
}

DEVI int tap_index(const Taps& t, int i, int n) { return min(max(t.first + i, 0), n - 1); }

template <class T>
DEVI void interp_body(int D, int Hi, int Wi, int Ho, int Wo, const T* __restrict__ x, T* __restrict__ y,
                      float scale_h, float scale_w, int antialias) {
    long total = (long)Ho * Wo * D;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int d = (int)(i % D);
        int ox = (int)((i / D) % Wo), oy = (int)(i / ((long)D * Wo));
        Taps ty = make_taps(oy, Hi, scale_h, antialias != 0);
        Taps tx = make_taps(ox, Wi, scale_w, antialias != 0);
        float acc = 0.0f;
        for (int a = 0; a < ty.count; ++a) {
            int sy = tap_index(ty, a, Hi);
            float row = 0.0f;
            for (int b = 0; b < tx.count; ++b)
                row += tap_weight(tx, b) * to_f32(x[((long)sy * Wi + tap_index(tx, b, Wi)) * D + d]);
            acc += tap_weight(ty, a) * row;
        }
        y[i] = from_f32<T>(acc);
    }
}

// y = bicubic(x) as above.
extern "C" __global__ void interp_bicubic_bf16(int D, int Hi, int Wi, int Ho, int Wo, const bf16_t* x, bf16_t* y,
                                               float scale_h, float scale_w, int antialias) {
    interp_body(D, Hi, Wi, Ho, Wo, x, y, scale_h, scale_w, antialias);
}
extern "C" __global__ void interp_bicubic_f16(int D, int Hi, int Wi, int Ho, int Wo, const f16_t* x, f16_t* y,
                                              float scale_h, float scale_w, int antialias) {
    interp_body(D, Hi, Wi, Ho, Wo, x, y, scale_h, scale_w, antialias);
}
extern "C" __global__ void interp_bicubic_f32(int D, int Hi, int Wi, int Ho, int Wo, const float* x, float* y,
                                              float scale_h, float scale_w, int antialias) {
    interp_body(D, Hi, Wi, Ho, Wo, x, y, scale_h, scale_w, antialias);
}
