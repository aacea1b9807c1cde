// kernels/select.cu — scoring kernels of the selection engine (`src/select`): uncertainty scores straight from
// logits, a per-block top-k, and the per-centre distance updates of coreset (k-center greedy) and BADGE
// (k-means++ on gradient embeddings). All math in f32.
//
// Launch contracts:
//   uncertainty_scores_*: blocks of 128 threads (4 warps), one warp per row: grid = ceil(rows / 4).
//   topk_partial_f32:     blocks of 256 threads, block b ranks rows [b·TOPK_SLICE, (b+1)·TOPK_SLICE);
//                         grid = ceil(n / TOPK_SLICE), no dynamic shared memory (16 KiB static).
//   mindist_update_*, badge_d2_update_*: blocks of 256 threads (8 warps), one warp per row: grid = ceil(N / 8).
#include "common.cuh"

#define TOPK_SLICE 2048

// Online softmax statistics of one value x folded into (m, Z, E) with Z = Σ e^(x−m), E = Σ (x−m)·e^(x−m).
DEVI void stats_merge(float& m, float& Z, float& E, float m2, float Z2, float E2) {
    if (Z2 == 0.0f) return;
    if (Z == 0.0f) {
        m = m2;
        Z = Z2;
        E = E2;
        return;
    }
    float mn = fmaxf(m, m2);
    float a = expf(m - mn), b = expf(m2 - mn);
    E = a * (E + (m - mn) * Z) + b * (E2 + (m2 - mn) * Z2);
    Z = a * Z + b * Z2;
    m = mn;
}

// (first, second) largest values, a repeated maximum counted twice.
DEVI void top2_push(float& first, float& second, float v) {
    if (v > first) {
        second = first;
        first = v;
    } else if (v > second) {
        second = v;
    }
}

// out[r, 0] = entropy −Σ p ln p, out[r, 1] = least confidence 1 − max p, out[r, 2] = margin −(p₁ − p₂)
// (−1 when C = 1), p = softmax(logits[r, :]); a row holding NaN or ±Inf gets NaN in all three.
// logits: [rows, C], out: [rows, 3] f32. Each warp reads its row once (online max/sum rescaling).
template <class T>
DEVI void uncertainty_body(int rows, int C, const T* __restrict__ logits, float* __restrict__ out) {
    int lane = threadIdx.x & 31;
    long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // the whole warp leaves together
    const T* x = logits + row * C;
    float m = NEG_INF, Z = 0.0f, E = 0.0f, first = NEG_INF, second = NEG_INF;
    int bad = 0;
    for (int j = lane; j < C; j += 32) {
        float v = to_f32(x[j]);
        if ((__float_as_uint(v) & 0x7f800000u) == 0x7f800000u) {  // NaN or ±Inf
            bad = 1;
            continue;
        }
        stats_merge(m, Z, E, v, 1.0f, 0.0f);
        top2_push(first, second, v);
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float Z2 = __shfl_xor_sync(0xffffffffu, Z, o);
        float E2 = __shfl_xor_sync(0xffffffffu, E, o);
        float f2 = __shfl_xor_sync(0xffffffffu, first, o);
        float s2 = __shfl_xor_sync(0xffffffffu, second, o);
        bad |= __shfl_xor_sync(0xffffffffu, bad, o);
        stats_merge(m, Z, E, m2, Z2, E2);
        float lo = fminf(first, f2);
        second = fmaxf(lo, fmaxf(second, s2));
        first = fmaxf(first, f2);
    }
    if (lane == 0) {
        float* o = out + row * 3;
        if (bad || C == 0) {
            float nan = __int_as_float(0x7fc00000);
            o[0] = nan;
            o[1] = nan;
            o[2] = nan;
        } else {
            float inv = 1.0f / Z;
            o[0] = logf(Z) - E * inv;
            o[1] = 1.0f - inv;
            o[2] = -(1.0f - expf(second - first)) * inv;
        }
    }
}

extern "C" __global__ void uncertainty_scores_bf16(int rows, int C, const bf16_t* logits, float* out) {
    uncertainty_body(rows, C, logits, out);
}
extern "C" __global__ void uncertainty_scores_f16(int rows, int C, const f16_t* logits, float* out) {
    uncertainty_body(rows, C, logits, out);
}
extern "C" __global__ void uncertainty_scores_f32(int rows, int C, const float* logits, float* out) {
    uncertainty_body(rows, C, logits, out);
}

// (va, ia) ranks before (vb, ib): higher value, then lower index (skipped slots carry −∞ and INT_MAX).
DEVI bool ranks_before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

// Block b: the top min(k, len) of rows i in its slice by scores[i·stride + col], best first (ties to the
// lower index), into out_idx/out_val[b·k …]; unused slots get index −1. Rows with skip[i] != 0 (skip may be
// null) take no part; NaN ranks as −∞. out_idx, out_val: [gridDim.x · k]; k ≤ TOPK_SLICE (launcher: ≤ 1024).
// The host merges the gridDim.x·k candidates (`ops::select::topk`). Bitonic sort of the slice in shared memory.
extern "C" __global__ void topk_partial_f32(int n, int k, int stride, int col, const float* scores, const int* skip,
                                            int* out_idx, float* out_val) {
    __shared__ float sv[TOPK_SLICE];
    __shared__ int si[TOPK_SLICE];
    long base = (long)blockIdx.x * TOPK_SLICE;
    for (int t = threadIdx.x; t < TOPK_SLICE; t += blockDim.x) {
        long i = base + t;
        float v = NEG_INF;
        int idx = 0x7fffffff;
        if (i < n && (skip == nullptr || skip[i] == 0)) {
            v = scores[i * stride + col];
            if (v != v) v = NEG_INF;
            idx = (int)i;
        }
        sv[t] = v;
        si[t] = idx;
    }
    __syncthreads();
    for (int size = 2; size <= TOPK_SLICE; size <<= 1) {
        for (int half = size >> 1; half > 0; half >>= 1) {
            for (int t = threadIdx.x; t < TOPK_SLICE / 2; t += blockDim.x) {
                int a = 2 * t - (t & (half - 1));  // the lower element of this compare pair
                int b = a + half;
                bool descending = (a & size) == 0;  // best-first runs, alternating for the merge
                float va = sv[a], vb = sv[b];
                int ia = si[a], ib = si[b];
                if (ranks_before(vb, ib, va, ia) == descending) {
                    sv[a] = vb;
                    sv[b] = va;
                    si[a] = ib;
                    si[b] = ia;
                }
            }
            __syncthreads();
        }
    }
    for (int t = threadIdx.x; t < k; t += blockDim.x) {
        long o = (long)blockIdx.x * k + t;
        bool valid = t < TOPK_SLICE && si[t] != 0x7fffffff;
        out_idx[o] = valid ? si[t] : -1;
        out_val[o] = valid ? sv[t] : NEG_INF;
    }
}

// mindist[i] = min(mindist[i], ‖x_i − x_centre‖²) (f32 sum of squared differences); mindist[centre] = −1 (a
// centre: never picked, and min keeps every negative entry). features: [N, D], mindist: [N] f32.
template <class T>
DEVI void mindist_body(int N, int D, const T* __restrict__ x, float* __restrict__ mindist, int centre) {
    int lane = threadIdx.x & 31;
    long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= N) return;
    const T* xi = x + row * D;
    const T* xc = x + (long)centre * D;
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) {
        float diff = to_f32(xi[d]) - to_f32(xc[d]);
        s += diff * diff;
    }
    s = warp_sum(s);
    if (lane == 0) mindist[row] = row == centre ? -1.0f : fminf(mindist[row], s);
}

extern "C" __global__ void mindist_update_bf16(int N, int D, const bf16_t* features, float* mindist, int centre) {
    mindist_body(N, D, features, mindist, centre);
}
extern "C" __global__ void mindist_update_f16(int N, int D, const f16_t* features, float* mindist, int centre) {
    mindist_body(N, D, features, mindist, centre);
}
extern "C" __global__ void mindist_update_f32(int N, int D, const float* features, float* mindist, int centre) {
    mindist_body(N, D, features, mindist, centre);
}

// BADGE's D² in gradient space without forming g = q ⊗ h:
// d2[i] = min(d2[i], max(0, ‖q_i‖²‖h_i‖² + ‖q_c‖²‖h_c‖² − 2⟨q_i, q_c⟩⟨h_i, h_c⟩)); d2[centre] = −1.
// q: [N, C] f32, qnorm2: [N], h: [N, D], hnorm2: [N], d2: [N] f32.
template <class T>
DEVI void badge_body(int N, int C, int D, const float* __restrict__ q, const float* __restrict__ qnorm2,
                     const T* __restrict__ h, const float* __restrict__ hnorm2, float* __restrict__ d2, int centre) {
    int lane = threadIdx.x & 31;
    long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= N) return;
    const float* qi = q + row * C;
    const float* qc = q + (long)centre * C;
    const T* hi = h + row * D;
    const T* hc = h + (long)centre * D;
    float qq = 0.0f, hh = 0.0f;
    for (int j = lane; j < C; j += 32) qq += qi[j] * qc[j];
    for (int d = lane; d < D; d += 32) hh += to_f32(hi[d]) * to_f32(hc[d]);
    qq = warp_sum(qq);
    hh = warp_sum(hh);
    if (lane == 0) {
        float v = qnorm2[row] * hnorm2[row] + qnorm2[centre] * hnorm2[centre] - 2.0f * qq * hh;
        d2[row] = row == centre ? -1.0f : fminf(d2[row], fmaxf(v, 0.0f));
    }
}

extern "C" __global__ void badge_d2_update_bf16(int N, int C, int D, const float* q, const float* qnorm2,
                                                const bf16_t* h, const float* hnorm2, float* d2, int centre) {
    badge_body(N, C, D, q, qnorm2, h, hnorm2, d2, centre);
}
extern "C" __global__ void badge_d2_update_f16(int N, int C, int D, const float* q, const float* qnorm2,
                                               const f16_t* h, const float* hnorm2, float* d2, int centre) {
    badge_body(N, C, D, q, qnorm2, h, hnorm2, d2, centre);
}
extern "C" __global__ void badge_d2_update_f32(int N, int C, int D, const float* q, const float* qnorm2,
                                               const float* h, const float* hnorm2, float* d2, int centre) {
    badge_body(N, C, D, q, qnorm2, h, hnorm2, d2, centre);
}
