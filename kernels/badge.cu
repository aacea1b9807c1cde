// kernels/badge.cu — BADGE's k-means++ seeding on the device with no host round trip per pick
// (`src/gpu/ops/badge.rs`, driven by `src/select/gpu.rs`; the CPU path is `src/select/badge.rs`).
//
// Gradient embeddings g_i = q_i ⊗ h_i are never formed: ‖g_i − g_j‖² = n_i + n_j − 2⟨q_i, q_j⟩⟨h_i, h_j⟩ with
// n_i = ‖q_i‖²‖h_i‖², the two inner products f32 sums and the rest in f64, as on the CPU. Centres fill slots
// 0, 1, …; slot 0's row is given by the host (the largest n_i), every next one is drawn on the device:
//   badge_norms_*:  n_i for every row (once);
//   badge_centre_*: cdist[j] = ‖g_centre − g_centres[j]‖² for every earlier slot j (for the pruning below);
//   badge_update_*: each active row's D² (squared distance to its nearest centre; −1 once it is a centre, +∞
//                   before any) and that centre's slot take slot s into account. Block b owns rows
//                   [b·R, (b+1)·R) and writes the sum of their D² to block_sums[b]; the last block to finish
//                   draws slot s + 1: with Σ the sum of every active D² and u = us[s] (uniform in [0, 1), drawn
//                   on the host), the first row in row order whose running sum of D² exceeds u·Σ (rounding
//                   past the end: the last row with D² > 0). When Σ is not positive, slot s + 1 gets −2 and the
//                   host finishes with uniform draws, as the CPU path does.
// A row is skipped without reading its features when the new centre cannot come closer than its nearest one
// (cdist[a] ≥ 4·D²·SLACK, the triangle inequality in gradient space), as on the CPU. Sums are in a fixed order,
// so a run is reproducible; they are not the CPU's order, so the draws equal the CPU's where the arithmetic is
// exact and may part from them after a draw that lands within rounding of a row's boundary.
//
// Launch contracts: blocks of BADGE_THREADS (256) threads = 8 warps, one warp per row or centre.
//   badge_norms_*: any grid (warps stride over the rows).     badge_centre_*: grid = max(1, ceil(s / 8)).
//   badge_update_*: grid · R ≥ N; `state` one word (zero before the first launch, left zero after each).
// f64 arrays (norm2, cdist, d2, block_sums, us) are 8-byte aligned.
#include "common.cuh"

#define BADGE_THREADS 256
#define BADGE_SLACK 1.0001
#define BADGE_UPDATE_BLOCKS 4  // blocks of badge_update_* an SM holds: at most 64 registers a thread
#define NO_PICK 0x7fffffff
#define UNIFORM_REST (-2)  // a slot's row when every active D² is 0: the host draws the rest uniformly

// ⟨x_a, x_b⟩ over n values, summed by the 32 lanes of a warp in f32; every lane gets it. Rows of a multiple of
// 8 values at a 16-byte aligned base are read 8 values a load (16-byte vectors, as coreset does).
template <class T>
DEVI float warp_dot(const T* __restrict__ x, long a, long b, int n) {
    const T* xa = x + a * n;
    const T* xb = x + b * n;
    int lane = threadIdx.x & 31;
    float s = 0.0f;
    if (n % 8 == 0 && aligned16(x)) {
        for (int d = 8 * lane; d < n; d += 256) {
            float va[8], vb[8];
            load8(va, xa + d);
            load8(vb, xb + d);
            UNROLL
            for (int e = 0; e < 8; ++e) s = fmaf(va[e], vb[e], s);
        }
    } else {
        for (int d = lane; d < n; d += 32) s = fmaf(to_f32(xa[d]), to_f32(xb[d]), s);
    }
    return warp_sum(s);
}

// ‖g_a − g_b‖² as the CPU path computes it from the f32 inner products, clamped at 0 against rounding.
template <class T>
DEVI double grad_dist2(int C, int D, const float* q, const T* h, const double* norm2, long a, long b) {
    double qd = warp_dot(q, a, b, C), hd = warp_dot(h, a, b, D);
    return fmax(norm2[a] + norm2[b] - 2.0 * qd * hd, 0.0);
}

template <class T>
DEVI void norms_body(int N, int C, int D, const float* q, const T* h, double* norm2) {
    int warps = gridDim.x * (blockDim.x >> 5);
    for (long i = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); i < N; i += warps) {
        double qq = warp_dot(q, i, i, C), hh = warp_dot(h, i, i, D);
        if ((threadIdx.x & 31) == 0) norm2[i] = qq * hh;
    }
}

template <class T>
DEVI void centre_body(int C, int D, const float* q, const T* h, const double* norm2, const int* centres,
                      double* cdist, int s) {
    int row = centres[s];
    int j = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row < 0 || j >= s) return;
    double d2 = grad_dist2(C, D, q, h, norm2, row, centres[j]);
    if ((threadIdx.x & 31) == 0) cdist[j] = d2;
}

// The smallest (or, with `largest`, the largest) v over the block; every thread gets it.
DEVI int block_extreme(int v, bool largest, int* slot) {
    __syncthreads();
    if (threadIdx.x == 0) *slot = largest ? -1 : NO_PICK;
    __syncthreads();
    if (largest) atomicMax(slot, v);
    else atomicMin(slot, v);
    __syncthreads();
    return *slot;
}

// Where a running sum of weights passes a target: the position, and the running sum before it.
struct Crossing {
    int pos;  // −1 when no weight is positive
    double before;
};

// Shared memory of find_crossing.
struct CrossingScratch {
    double scan[32];
    double before;
    int slot;
};

// A weight of the draw: w[p] if positive, else 0 (centres and labelled rows hold −1). Other blocks wrote it:
// volatile reads go past the (incoherent) L1.
DEVI double weight(const double* w, long p) {
    double v = *(volatile const double*)(w + p);
    return v > 0.0 ? v : 0.0;
}

// Over `count` weights (weight(w, 0 .. count)) in order, with the running sum starting at `base`: the first
// position p with a positive weight where (running sum before p) + weight > target, target being `u` times the
// weights' total when `relative`, else `u`; when rounding leaves none, the last position of positive weight.
// `total` gets the weights' sum. Thread t takes a contiguous run of positions.
DEVI Crossing find_crossing(int count, double base, const double* w, double u, bool relative, double& total,
                            CrossingScratch& sh) {
    int per = (count + (int)blockDim.x - 1) / (int)blockDim.x;
    int lo = min(count, (int)threadIdx.x * per), hi = min(count, lo + per);
    double mine = 0.0;
    for (int p = lo; p < hi; ++p) mine += weight(w, p);
    double cum = base + block_scan(mine, sh.scan, total);
    double target = relative ? u * total : u;
    int found = NO_PICK, last = -1;
    double found_before = 0.0, last_before = 0.0;
    for (int p = lo; p < hi; ++p) {
        double v = weight(w, p);
        if (v > 0.0) {
            if (found == NO_PICK && cum + v > target) found = p, found_before = cum;
            last = p, last_before = cum;
        }
        cum += v;
    }
    int first = block_extreme(found, false, &sh.slot);
    int pos = first != NO_PICK ? first : block_extreme(last, true, &sh.slot);
    if (pos >= 0 && (pos == found || (first == NO_PICK && pos == last)))
        sh.before = first != NO_PICK ? found_before : last_before;
    __syncthreads();
    return Crossing{pos, pos >= 0 ? sh.before : 0.0};
}

// The last block's draw of slot s + 1 (see the top of the file): the block holding the crossing of u·Σ (level
// 0, over the blocks' sums), then the row inside it (level 1). One call site of find_crossing: inlined twice, it
// spilled on sm_80.
DEVI void draw_next(int N, int R, const double* d2, const double* block_sums, const double* us, int* centres,
                    int s, int slots) {
    __shared__ CrossingScratch sh;
    const double* w = block_sums;
    int count = gridDim.x, pick = UNIFORM_REST;
    double base = 0.0, target = us[s], total;
    long row0 = 0;
#pragma unroll 1
    for (int level = 0; level < 2; ++level) {
        Crossing c = find_crossing(count, base, w, target, level == 0, total, sh);
        if (level == 1) {
            pick = c.pos < 0 ? UNIFORM_REST : (int)(row0 + c.pos);
        } else if (total > 0.0) {  // false for 0 and NaN
            target *= total;
            row0 = (long)c.pos * R;
            count = (int)min((long)R, (long)N - row0);
            w = d2 + row0;
            base = c.before;
        } else {
            break;
        }
    }
    if (threadIdx.x == 0 && s + 1 < slots) centres[s + 1] = pick;
}

template <class T>
DEVI void update_body(int N, int C, int D, int R, const float* q, const T* h, const double* norm2,
                      int* centres, const double* cdist, double* d2, int* nearest, double* block_sums,
                      unsigned* state, const double* us, int s, int slots) {
    __shared__ double warp_sums[BADGE_THREADS / 32];
    __shared__ bool last;
    int row_new = centres[s];
    if (row_new < 0) return;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    long row0 = (long)blockIdx.x * R, end = min((long)N, row0 + R);
    double sum = 0.0;  // this warp's rows' D², in row order
    for (long i = row0 + warp; i < end; i += warps) {
        double m = d2[i];
        if (m < 0.0) continue;  // a centre already
        if (i == row_new) {
            if (lane == 0) d2[i] = -1.0;
            continue;
        }
        int a = nearest[i];
        if (m > 0.0 && (a < 0 || cdist[a] < 4.0 * m * BADGE_SLACK)) {  // the new centre may come closer
            double v = grad_dist2(C, D, q, h, norm2, i, row_new);
            if (v < m) {
                m = v;
                if (lane == 0) {
                    d2[i] = v;
                    nearest[i] = s;
                }
            }
        }
        sum += m;
    }
    if (lane == 0) warp_sums[warp] = sum;
    __threadfence();  // this block's D² reach the grid before it says it has arrived
    __syncthreads();
    if (threadIdx.x == 0) {
        double b = 0.0;
        for (int w = 0; w < warps; ++w) b += warp_sums[w];
        block_sums[blockIdx.x] = b;
        __threadfence();
        last = atomicAdd(state, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    draw_next(N, R, d2, block_sums, us, centres, s, slots);
    if (threadIdx.x == 0) *state = 0u;
}

extern "C" __global__ void badge_norms_bf16(int N, int C, int D, const float* q, const bf16_t* h, double* norm2) {
    norms_body(N, C, D, q, h, norm2);
}
extern "C" __global__ void badge_norms_f16(int N, int C, int D, const float* q, const f16_t* h, double* norm2) {
    norms_body(N, C, D, q, h, norm2);
}
extern "C" __global__ void badge_norms_f32(int N, int C, int D, const float* q, const float* h, double* norm2) {
    norms_body(N, C, D, q, h, norm2);
}
extern "C" __global__ void badge_centre_bf16(int C, int D, const float* q, const bf16_t* h, const double* norm2,
                                        const int* centres, double* cdist, int s) {
    centre_body(C, D, q, h, norm2, centres, cdist, s);
}
extern "C" __global__ void badge_centre_f16(int C, int D, const float* q, const f16_t* h, const double* norm2,
                                        const int* centres, double* cdist, int s) {
    centre_body(C, D, q, h, norm2, centres, cdist, s);
}
extern "C" __global__ void badge_centre_f32(int C, int D, const float* q, const float* h, const double* norm2,
                                        const int* centres, double* cdist, int s) {
    centre_body(C, D, q, h, norm2, centres, cdist, s);
}
extern "C" __global__ void __launch_bounds__(BADGE_THREADS, BADGE_UPDATE_BLOCKS) badge_update_bf16(
    int N, int C, int D, int R, const float* q, const bf16_t* h, const double* norm2, int* centres, const double* cdist,
    double* d2, int* nearest, double* block_sums, unsigned* state, const double* us, int s, int slots) {
    update_body(N, C, D, R, q, h, norm2, centres, cdist, d2, nearest, block_sums, state, us, s, slots);
}
extern "C" __global__ void __launch_bounds__(BADGE_THREADS, BADGE_UPDATE_BLOCKS) badge_update_f16(
    int N, int C, int D, int R, const float* q, const f16_t* h, const double* norm2, int* centres, const double* cdist,
    double* d2, int* nearest, double* block_sums, unsigned* state, const double* us, int s, int slots) {
    update_body(N, C, D, R, q, h, norm2, centres, cdist, d2, nearest, block_sums, state, us, s, slots);
}
extern "C" __global__ void __launch_bounds__(BADGE_THREADS, BADGE_UPDATE_BLOCKS) badge_update_f32(
    int N, int C, int D, int R, const float* q, const float* h, const double* norm2, int* centres, const double* cdist,
    double* d2, int* nearest, double* block_sums, unsigned* state, const double* us, int s, int slots) {
    update_body(N, C, D, R, q, h, norm2, centres, cdist, d2, nearest, block_sums, state, us, s, slots);
}
