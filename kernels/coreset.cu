// kernels/coreset.cu — k-center greedy (coreset) on the device with no host round trip per pick
// (`src/gpu/ops/coreset.rs`, driven by `src/select/gpu.rs`). Centres fill slots 0, 1, …: the labelled rows
// first, then the picks. Per slot s, two launches:
//   coreset_centre_*: the slot's row (given by the host, or the farthest row after slot s − 1, from best[s − 1])
//                     into centres[s], and cdist[j] = ‖x_centre − x_centres[j]‖² for every earlier slot j;
//   coreset_update_*: each active row's squared distance to its nearest centre (mindist, −1 for centres) and
//                     that centre's slot (nearest) take the new centre into account, and best[s] gets the
//                     farthest active row: (distance bits << 32 | ~row) by a 64-bit atomicMax, so ties go to
//                     the lower row and 0 means "no active row".
// A row is skipped without reading its features when the new centre cannot come closer than its nearest one:
// d(new, a)² ≥ 4·m·SLACK (triangle inequality, d(i, new) ≥ d(new, a) − d(i, a); SLACK covers f32 rounding), as
// the CPU path does (`src/select/coreset.rs`). Distances are f32 sums of squared differences.
//
// Launch contracts: blocks of 256 threads (8 warps), one warp per row or centre.
//   coreset_centre_*: grid = max(1, ceil(s / 8)).   coreset_update_*: any grid (warps stride over the rows).
#include "common.cuh"

#define CORESET_SLACK 1.0001f  // the CPU path's SLACK

// The row of slot s: `given` when ≥ 0, else the farthest row after slot s − 1 (−1: none, or no slot before).
DEVI int slot_row(int s, int given, const unsigned long long* best) {
    if (given >= 0) return given;
    unsigned long long b = s > 0 ? best[s - 1] : 0ull;
    return b == 0ull ? -1 : (int)(0xffffffffu - (unsigned)(b & 0xffffffffull));
}

// ‖x_a − x_b‖² over D features, summed by the 32 lanes of a warp (16-byte loads when `vec`); every lane gets it.
template <class T>
DEVI float warp_dist2(const T* __restrict__ x, long a, long b, int D, bool vec) {
    const T* xa = x + a * D;
    const T* xb = x + b * D;
    int lane = threadIdx.x & 31;
    float s = 0.0f;
    if (vec) {
        for (int d = 8 * lane; d < D; d += 256) {
            float va[8], vb[8];
            load8(va, xa + d);
            load8(vb, xb + d);
            UNROLL
            for (int e = 0; e < 8; ++e) {
                float diff = va[e] - vb[e];
                s = fmaf(diff, diff, s);
            }
        }
    } else {
        for (int d = lane; d < D; d += 32) {
            float diff = to_f32(xa[d]) - to_f32(xb[d]);
            s = fmaf(diff, diff, s);
        }
    }
    return warp_sum(s);
}

// Whether rows of x can be read 8 values at a time in 16-byte vectors.
template <class T>
DEVI bool rows_vectorised(const T* x, int D) {
    return D % 8 == 0 && aligned16(x);
}

template <class T>
DEVI void centre_body(int D, const T* __restrict__ x, int* centres, float* __restrict__ cdist,
                      const unsigned long long* best, int s, int given) {
    int row = slot_row(s, given, best);
    if (blockIdx.x == 0 && threadIdx.x == 0) centres[s] = row;
    if (row < 0) return;
    int j = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (j >= s) return;
    float d2 = warp_dist2(x, row, centres[j], D, rows_vectorised(x, D));
    if ((threadIdx.x & 31) == 0) cdist[j] = d2;
}

template <class T>
DEVI void update_body(int N, int D, const T* __restrict__ x, const int* centres, const float* __restrict__ cdist,
                      float* __restrict__ mindist, int* __restrict__ nearest, unsigned long long* best, int s) {
    __shared__ unsigned long long block_best[8];
    int row_new = centres[s];
    if (row_new < 0) return;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = gridDim.x * (blockDim.x >> 5);
    bool vec = rows_vectorised(x, D);
    unsigned long long mine = 0ull;  // this warp's farthest active row, packed
    for (long i = (long)blockIdx.x * (blockDim.x >> 5) + warp; i < N; i += warps) {
        float m = mindist[i];
        if (m < 0.0f) continue;  // a centre already
        if (i == row_new) {
            if (lane == 0) mindist[i] = -1.0f;
            continue;
        }
        int a = nearest[i];
        if (m > 0.0f && (a < 0 || cdist[a] < 4.0f * m * CORESET_SLACK)) {  // the new centre may come closer
            float d2 = warp_dist2(x, i, row_new, D, vec);
            if (d2 < m) {
                m = d2;
                if (lane == 0) {
                    mindist[i] = d2;
                    nearest[i] = s;
                }
            }
        }
        unsigned long long packed = ((unsigned long long)__float_as_uint(m) << 32) | (0xffffffffu - (unsigned)i);
        mine = packed > mine ? packed : mine;
    }
    if (lane == 0) block_best[warp] = mine;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w) mine = block_best[w] > mine ? block_best[w] : mine;
        if (mine != 0ull) atomicMax(&best[s], mine);
    }
}

extern "C" __global__ void coreset_centre_bf16(int D, const bf16_t* x, int* centres, float* cdist,
                                               const unsigned long long* best, int s, int given) {
    centre_body(D, x, centres, cdist, best, s, given);
}
extern "C" __global__ void coreset_centre_f16(int D, const f16_t* x, int* centres, float* cdist,
                                              const unsigned long long* best, int s, int given) {
    centre_body(D, x, centres, cdist, best, s, given);
}
extern "C" __global__ void coreset_centre_f32(int D, const float* x, int* centres, float* cdist,
                                              const unsigned long long* best, int s, int given) {
    centre_body(D, x, centres, cdist, best, s, given);
}
extern "C" __global__ void coreset_update_bf16(int N, int D, const bf16_t* x, const int* centres, const float* cdist,
                                               float* mindist, int* nearest, unsigned long long* best, int s) {
    update_body(N, D, x, centres, cdist, mindist, nearest, best, s);
}
extern "C" __global__ void coreset_update_f16(int N, int D, const f16_t* x, const int* centres, const float* cdist,
                                              float* mindist, int* nearest, unsigned long long* best, int s) {
    update_body(N, D, x, centres, cdist, mindist, nearest, best, s);
}
// f32 rows held to 64 registers (4 blocks an SM; 66–72 unbounded, 3 blocks); bf16 and f16 take 40–48 unbounded.
extern "C" __global__ void __launch_bounds__(256, 4) coreset_update_f32(int N, int D, const float* x,
                                                                        const int* centres, const float* cdist,
                                                                        float* mindist, int* nearest,
                                                                        unsigned long long* best, int s) {
    update_body(N, D, x, centres, cdist, mindist, nearest, best, s);
}
