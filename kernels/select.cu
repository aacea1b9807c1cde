// kernels/select.cu — scoring kernels of the selection engine (`src/select`): uncertainty scores straight from
// logits, and coreset's per-centre distance update of before `coreset.cu` (bench-kernels' baseline). All math
// in f32. The top-k of a score column is `topk.cu`'s; BADGE is `badge.cu`.
//
// Launch contracts:
//   uncertainty_scores_*: blocks of 128 threads; `lanes` consecutive lanes (a power of two, 1–32) score one
//                         row, so a block scores 128 / lanes rows: grid = ceil(rows · lanes / 128).
//   mindist_update_*: blocks of 256 threads (8 warps), one warp per row: grid = ceil(N / 8).
#include "common.cuh"

#define UNC_CHUNK 16          // values a lane folds in at once: one max update and one rescale per chunk
#define UNC_CLAMP (-150.0f)   // z = x − max is clamped here: e^z = 2^(−216) underflows to exactly 0
#define UNC_LOG2E 1.44269504088896341f

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

// One lane's share of a row: m = largest value, second = second largest (a repeated maximum counted twice),
// Z = Σ e^(x−m), E = Σ (x−m)·e^(x−m), bad = NaN once a NaN or ±Inf was read (x·0 is NaN exactly then).
struct RowStats {
    float m, second, Z, E, bad;
};

// Fold x[0 .. UNC_CHUNK) into s; with Tail, only x[0 .. nvalid) are values and the rest is padding (−∞).
// The chunk's maximum first, then one rescale of the running sums and one exp2 per value, summed in four
// independent accumulators. Padding and values below max − 150 add exactly 0 (z is clamped, e = 0).
template <bool Tail>
DEVI void fold_chunk(RowStats& s, const float (&x)[UNC_CHUNK], int nvalid) {
    float f = s.m, sc = s.second;
    UNROLL
    for (int i = 0; i < UNC_CHUNK; ++i) {
        sc = fmaxf(sc, fminf(f, x[i]));
        f = fmaxf(f, x[i]);
        s.bad = fmaf((Tail && i >= nvalid) ? 0.0f : x[i], 0.0f, s.bad);
    }
    // d = m_old − m_new ≤ 0; UNC_CLAMP on the first chunk (m_old = −∞, Z = E = 0), so a = 0 and no NaN.
    float d = fmaxf(s.m - f, UNC_CLAMP);
    float a = exp2_ftz(d * UNC_LOG2E);
    s.E = a * fmaf(d, s.Z, s.E);
    s.Z = a * s.Z;
    float zs[4] = {0.0f, 0.0f, 0.0f, 0.0f}, es[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    UNROLL
    for (int i = 0; i < UNC_CHUNK; ++i) {
        float z = fmaxf(x[i] - f, UNC_CLAMP);  // −∞ − f, and −∞ − (−∞) = NaN, both become UNC_CLAMP
        float e = exp2_ftz(z * UNC_LOG2E);  // a flushed subnormal moves Z (≥ 1) by < 2^-126
        zs[i & 3] += e;
        es[i & 3] = fmaf(z, e, es[i & 3]);
    }
    s.Z += (zs[0] + zs[1]) + (zs[2] + zs[3]);
    s.E += (es[0] + es[1]) + (es[2] + es[3]);
    s.m = f;
    s.second = sc;
}

// Element q (0 … 16/sizeof(T) − 1) of 16 loaded bytes as f32.
DEVI float vec_elem(const u32 (&r)[4], int q, const float*) { return __uint_as_float(r[q]); }
template <class H>
DEVI float vec_elem(const u32 (&r)[4], int q, const H*) {
    return (q & 1) ? hi_f32<H>(r[q >> 1]) : lo_f32<H>(r[q >> 1]);
}

// Units u0, u0 + lanes, … (NL = UNC_CHUNK / VW of them, VW values each: 16-byte vectors when Vec, else
// single values) of row x into v; units from `valid` on are padding (−∞) and are not read.
template <class T, bool Vec>
DEVI void load_units(float (&v)[UNC_CHUNK], const T* __restrict__ x, int u0, int lanes, int valid) {
    constexpr int VW = Vec ? 16 / sizeof(T) : 1, NL = UNC_CHUNK / VW;
    if (Vec) {
        u32 r[NL][4];
        UNROLL
        for (int l = 0; l < NL; ++l) {
            if (l < valid) ld_global_16(r[l], x + (long)(u0 + l * lanes) * VW);
        }
        UNROLL
        for (int l = 0; l < NL; ++l) {
            UNROLL
            for (int q = 0; q < VW; ++q) v[l * VW + q] = l < valid ? vec_elem(r[l], q, x) : NEG_INF;
        }
    } else {
        UNROLL
        for (int l = 0; l < NL; ++l) v[l] = l < valid ? to_f32(x[u0 + l * lanes]) : NEG_INF;
    }
}

// Fold this lane's units of row x (`units` in all, unit sub + lanes·i, VW values each) into s, NL units a
// fold. Every lane runs the same number of folds: first those all lanes fill, then masked ones, so lanes
// with one unit more or less than their neighbours do not diverge.
template <class T, bool Vec>
DEVI void fold_row(RowStats& s, const T* __restrict__ x, int units, int sub, int lanes) {
    constexpr int VW = Vec ? 16 / sizeof(T) : 1, NL = UNC_CHUNK / VW;
    int mine = sub < units ? (units - sub + lanes - 1) / lanes : 0;  // units this lane reads
    int full = units / lanes / NL;                                    // folds every lane fills
    int folds = ((units + lanes - 1) / lanes + NL - 1) / NL;
    float v[UNC_CHUNK];
    for (int it = 0; it < full; ++it) {
        load_units<T, Vec>(v, x, sub + it * NL * lanes, lanes, NL);
        fold_chunk<false>(s, v, UNC_CHUNK);
    }
    for (int it = full; it < folds; ++it) {
        int valid = min(max(mine - it * NL, 0), NL);
        load_units<T, Vec>(v, x, sub + it * NL * lanes, lanes, valid);
        fold_chunk<true>(s, v, valid * VW);
    }
}

// out[r, 0] = entropy −Σ p ln p, out[r, 1] = least confidence 1 − max p, out[r, 2] = margin −(p₁ − p₂)
// (−1 when C = 1), p = softmax(logits[r, :]); a row holding NaN or ±Inf gets NaN in all three.
// logits: [rows, C], out: [rows, 3] f32. `lanes` lanes read each row once (16-byte loads when every row is
// 16-byte aligned), then combine their statistics with shuffles.
template <class T>
DEVI void uncertainty_body(int rows, int C, const T* __restrict__ logits, float* __restrict__ out, int lanes) {
    int sub = threadIdx.x & (lanes - 1);
    long row = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> (__ffs(lanes) - 1);  // lanes: a power of two
    bool live = row < rows;  // lanes past the last row still take part in the shuffles
    RowStats s = {NEG_INF, NEG_INF, 0.0f, 0.0f, 0.0f};
    if (live) {
        const T* x = logits + row * C;
        constexpr int VW = 16 / sizeof(T);
        if (C % VW == 0 && aligned16(logits)) {
            fold_row<T, true>(s, x, C / VW, sub, lanes);
        } else {
            fold_row<T, false>(s, x, C, sub, lanes);
        }
    }
    for (int o = lanes >> 1; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, s.m, o);
        float Z2 = __shfl_xor_sync(0xffffffffu, s.Z, o);
        float E2 = __shfl_xor_sync(0xffffffffu, s.E, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s.second, o);
        s.bad += __shfl_xor_sync(0xffffffffu, s.bad, o);
        float first = s.m;
        stats_merge(s.m, s.Z, s.E, m2, Z2, E2);
        s.second = fmaxf(fminf(first, m2), fmaxf(s.second, s2));
    }
    if (live && sub == 0) {
        float* o = out + row * 3;
        if (s.bad != s.bad || C == 0) {
            float nan = __int_as_float(0x7fc00000);
            o[0] = nan;
            o[1] = nan;
            o[2] = nan;
        } else {
            float inv = 1.0f / s.Z;
            o[0] = logf(s.Z) - s.E * inv;
            o[1] = 1.0f - inv;
            o[2] = -(1.0f - expf(s.second - s.m)) * inv;
        }
    }
}

extern "C" __global__ void uncertainty_scores_bf16(int rows, int C, const bf16_t* logits, float* out, int lanes) {
    uncertainty_body(rows, C, logits, out, lanes);
}
extern "C" __global__ void uncertainty_scores_f16(int rows, int C, const f16_t* logits, float* out, int lanes) {
    uncertainty_body(rows, C, logits, out, lanes);
}
extern "C" __global__ void uncertainty_scores_f32(int rows, int C, const float* logits, float* out, int lanes) {
    uncertainty_body(rows, C, logits, out, lanes);
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
