// kernels/topk.cu — the exact top-k of one score column on the device (`src/gpu/ops/topk.rs`): best first, ties
// to the lower index, rows with skip[i] != 0 left out, NaN ranked as −∞ and −0 as +0. Row i's score is
// scores[i·stride + col]. One block's sort (topk_block_f32, topk_radix_sort_f32) takes k ≤ TOPK_SLICE / 2; the
// radix select any k (a larger k's candidates are sorted by tiles and merges, below).
//
// n ≤ TOPK_SLICE rows: topk_block_f32 alone (one block sorts them in shared memory).
// More: a radix select of the k-th largest key, 11 bits a pass, then the rows above it and the first rows equal
// to it are gathered and sorted; all on the stream, so only the k results go to the host:
//   topk_radix_init_f32 → topk_radix_pass_f32 (pass 0, 1, 2) → topk_radix_ties_f32 → topk_radix_gather_f32
//   → topk_radix_sort_f32 (k ≤ TOPK_SLICE / 2), or topk_tile_sort_f32 → topk_merge_f32 × ⌈log₂ tiles⌉.
//
// The kernels that read the column take (n, k, stride, col, scores, skip) first.
// Launch contracts: blocks of exactly TOPK_THREADS (256) threads, no dynamic shared memory.
//   topk_block_f32, topk_radix_init_f32, topk_radix_sort_f32: grid = 1.
//   topk_radix_pass_f32, topk_radix_ties_f32, topk_radix_gather_f32: grid = ceil(n / TOPK_SLICE); block b reads
//   rows [b·TOPK_SLICE, (b+1)·TOPK_SLICE).
//   topk_tile_sort_f32: grid = ceil(k / TOPK_SLICE), outputs of grid · TOPK_SLICE.   topk_merge_f32: any grid.
//   `state` holds RADIX_STATE words, `hist` RADIX_BINS, `ties` one word a block of the grid.
#include "common.cuh"

#define TOPK_SLICE 2048
#define TOPK_THREADS 256
#define RADIX_BINS 2048  // digits of at most 11 bits: key bits 31–21, 20–10, 9–0 in passes 0, 1, 2
#define ROWS_A_THREAD (TOPK_SLICE / TOPK_THREADS)
#define BINS_A_THREAD (RADIX_BINS / TOPK_THREADS)

// Words of `state`.
#define ST_PREFIX 0   // key bits fixed by the passes so far, right-aligned; after the last pass, the threshold key
#define ST_NEED 1     // rows still to take among those whose key starts with the prefix
#define ST_TIES 2     // after the last pass: rows whose key is the threshold
#define ST_ARRIVED 3  // blocks of the running pass that have added their histogram
#define ST_TAKEN 4    // candidates gathered
#define ST_SETTLED 5  // 1 once no more than k rows take part: the threshold is 0 and every row is taken
#define RADIX_STATE 8

// (va, ia) ranks before (vb, ib): higher value, then lower index (unused slots carry −∞ and INT_MAX).
DEVI bool ranks_before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

// Bitonic sort of sv/si[0 .. len) best first (len a power of two), from stage 2. Every thread calls.
DEVI void bitonic_sort(float* sv, int* si, int len) {
    for (int size = 2; size <= len; size <<= 1) {
        for (int half = size >> 1; half > 0; half >>= 1) {
            for (int t = threadIdx.x; t < len / 2; t += blockDim.x) {
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
}

// The best k of sv/si (sorted, at least k slots) into out_idx/out_val; index −1 and −∞ mark unused slots.
DEVI void write_sorted(int k, const float* sv, const int* si, int* out_idx, float* out_val) {
    for (int t = threadIdx.x; t < k; t += blockDim.x) {
        bool valid = si[t] != 0x7fffffff;
        out_idx[t] = valid ? si[t] : -1;
        out_val[t] = valid ? sv[t] : NEG_INF;
    }
}

// Row i's score as ranked: NaN as −∞.
DEVI float ranked_score(const float* scores, long i, int stride, int col) {
    float v = scores[i * stride + col];
    return v != v ? NEG_INF : v;
}

// An unsigned key in the order of the score (−0 as +0); every score's key is ≥ 0x007fffff (−∞'s), so 0 is
// free to mean "takes no part".
DEVI unsigned order_key(float v) {
    unsigned b = __float_as_uint(v == 0.0f ? 0.0f : v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Row i's key, or 0 past the last row and for skipped rows.
DEVI unsigned row_key(long i, int n, int stride, int col, const float* scores, const int* skip) {
    if (i >= n || (skip != nullptr && skip[i] != 0)) return 0u;
    return order_key(ranked_score(scores, i, stride, col));
}

// The keys of this thread's rows of block b's slice: rows b·TOPK_SLICE + r·TOPK_THREADS + threadIdx.x, all
// loads issued before any is used.
DEVI void slice_keys(unsigned (&keys)[ROWS_A_THREAD], int n, int stride, int col, const float* scores,
                     const int* skip) {
    long base = (long)blockIdx.x * TOPK_SLICE + threadIdx.x;
    UNROLL
    for (int r = 0; r < ROWS_A_THREAD; ++r) keys[r] = row_key(base + r * TOPK_THREADS, n, stride, col, scores, skip);
}

// One block: the top min(k, rows taking part) of rows [0, n), n ≤ TOPK_SLICE, into out_idx/out_val[0 .. k),
// best first; unused slots get index −1.
extern "C" __global__ void topk_block_f32(int n, int k, int stride, int col, const float* scores, const int* skip,
                                          int* out_idx, float* out_val) {
    __shared__ float sv[TOPK_SLICE];
    __shared__ int si[TOPK_SLICE];
    for (int t = threadIdx.x; t < TOPK_SLICE; t += blockDim.x) {
        bool part = t < n && (skip == nullptr || skip[t] == 0);
        sv[t] = part ? ranked_score(scores, t, stride, col) : NEG_INF;
        si[t] = part ? t : 0x7fffffff;
    }
    __syncthreads();
    bitonic_sort(sv, si, TOPK_SLICE);
    write_sorted(k, sv, si, out_idx, out_val);
}

// Zeroes `state` and `hist` before pass 0.
extern "C" __global__ void topk_radix_init_f32(unsigned* state, unsigned* hist) {
    for (int t = threadIdx.x; t < RADIX_STATE + RADIX_BINS; t += blockDim.x) {
        if (t < RADIX_STATE) state[t] = 0u;
        else hist[t - RADIX_STATE] = 0u;
    }
}

// The last block of a pass: the digit holding the need-th largest key among the rows with the prefix (bins of
// the whole grid in `hist`, which it zeroes for the next pass), appended to the prefix. Thread t holds digits
// [RADIX_BINS − 8(t+1), RADIX_BINS − 8t) (BINS_A_THREAD = 8), so the scan runs from the highest digit down.
DEVI void choose_digit(unsigned* state, unsigned* hist, int pass, int k, unsigned* scratch) {
    unsigned mine[BINS_A_THREAD], sum = 0u;
    int top = RADIX_BINS - 1 - BINS_A_THREAD * (int)threadIdx.x;
    UNROLL
    for (int j = 0; j < BINS_A_THREAD; ++j) {
        mine[j] = atomicExch(&hist[top - j], 0u);
        sum += mine[j];
    }
    // Read before the scan's barriers: after them, one thread rewrites the state.
    unsigned need = pass == 0 ? (unsigned)k : state[ST_NEED], prefix = state[ST_PREFIX];
    unsigned total;
    unsigned above = block_scan(sum, scratch, total);  // rows with a higher digit than this thread's
    if (threadIdx.x == 0) state[ST_ARRIVED] = 0u;
    if (pass == 0 && total <= need) {  // no more than k rows take part: every one is taken
        if (threadIdx.x == 0) state[ST_SETTLED] = 1u;  // the threshold (ST_PREFIX), ST_NEED and ST_TIES stay 0
        return;
    }
    if (above >= need || above + sum < need) return;  // the digit is another thread's
    UNROLL
    for (int j = 0; j < BINS_A_THREAD; ++j) {
        if (above < need && above + mine[j] >= need) {
            unsigned width = pass == 2 ? 10u : 11u;
            state[ST_PREFIX] = (pass == 0 ? 0u : prefix << width) | (unsigned)(top - j);
            state[ST_NEED] = need - above;
            state[ST_TIES] = mine[j];
        }
        above += mine[j];
    }
}

// Pass p (0, 1, 2) of the radix select: a histogram of key bits 31–21, 20–10 or 9–0 over the rows whose
// higher bits equal the prefix; the last block to finish picks the digit (choose_digit).
extern "C" __global__ void topk_radix_pass_f32(int n, int k, int stride, int col, const float* scores,
                                               const int* skip, unsigned* state, unsigned* hist, int pass) {
    __shared__ unsigned bins[RADIX_BINS];
    __shared__ unsigned scratch[32];
    __shared__ bool last;
    if (state[ST_SETTLED] != 0u) return;
    for (int t = threadIdx.x; t < RADIX_BINS; t += blockDim.x) bins[t] = 0u;
    __syncthreads();
    int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
    unsigned mask = pass == 2 ? 0x3ffu : 0x7ffu, prefix = state[ST_PREFIX];
    // Runs of one digit in a thread's rows are counted once (scores of a pool often share their top bits).
    unsigned keys[ROWS_A_THREAD], run_digit = 0u, run = 0u;
    slice_keys(keys, n, stride, col, scores, skip);
    UNROLL
    for (int r = 0; r < ROWS_A_THREAD; ++r) {
        unsigned key = keys[r];
        if (key == 0u || (pass > 0 && (key >> (shift + (pass == 2 ? 10 : 11))) != prefix)) continue;
        unsigned digit = (key >> shift) & mask;
        if (run > 0u && digit != run_digit) {
            atomicAdd(&bins[run_digit], run);
            run = 0u;
        }
        run_digit = digit;
        ++run;
    }
    if (run > 0u) atomicAdd(&bins[run_digit], run);
    __syncthreads();
    for (int t = threadIdx.x; t < RADIX_BINS; t += blockDim.x) {
        if (bins[t] != 0u) atomicAdd(&hist[t], bins[t]);
    }
    __threadfence();  // this block's counts reach the grid before it says it has arrived
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&state[ST_ARRIVED], 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    choose_digit(state, hist, pass, k, scratch);
}

// Rows of block b's slice whose key is the threshold, into ties[b]: only when some of them are left out
// (ST_TIES > ST_NEED), for topk_radix_gather_f32 to take the first in row order.
extern "C" __global__ void topk_radix_ties_f32(int n, int k, int stride, int col, const float* scores,
                                               const int* skip, const unsigned* state, unsigned* ties) {
    __shared__ unsigned scratch[32];
    if (state[ST_TIES] == state[ST_NEED]) return;
    unsigned keys[ROWS_A_THREAD], threshold = state[ST_PREFIX], count = 0u;
    slice_keys(keys, n, stride, col, scores, skip);
    UNROLL
    for (int r = 0; r < ROWS_A_THREAD; ++r) count += keys[r] == threshold;
    unsigned total;
    block_scan(count, scratch, total);
    if (threadIdx.x == 0) ties[blockIdx.x] = total;
}

// The k rows: every row whose key is above the threshold and the first ST_NEED (in row order) of those equal
// to it, appended in any order to cand_idx/cand_val (ST_TAKEN counts them).
extern "C" __global__ void topk_radix_gather_f32(int n, int k, int stride, int col, const float* scores,
                                                 const int* skip, unsigned* state, const unsigned* ties,
                                                 int* cand_idx, float* cand_val) {
    __shared__ unsigned scratch[32];
    unsigned threshold = state[ST_PREFIX], need = state[ST_NEED];
    bool rank = state[ST_TIES] != need;  // some rows equal to the threshold are left out
    unsigned before = 0u;                // with rank: rows equal to the threshold in earlier rows
    if (rank) {
        unsigned part = 0u;
        for (int b = threadIdx.x; b < (int)blockIdx.x; b += blockDim.x) part += ties[b];
        block_scan(part, scratch, before);
    }
    unsigned keys[ROWS_A_THREAD];
    slice_keys(keys, n, stride, col, scores, skip);
    UNROLL
    for (int r = 0; r < ROWS_A_THREAD; ++r) {
        long i = (long)blockIdx.x * TOPK_SLICE + r * TOPK_THREADS + threadIdx.x;
        unsigned key = keys[r];
        bool tie = key == threshold && key != 0u;
        bool take = key > threshold || (tie && !rank);
        if (rank) {
            unsigned count, pos = block_scan(tie ? 1u : 0u, scratch, count);
            take = take || (tie && before + pos < need);
            before += count;
        }
        if (take) {
            unsigned slot = atomicAdd(&state[ST_TAKEN], 1u);
            if (slot < (unsigned)k) {  // always, by the select; the bound keeps a broken one inside the buffers
                cand_idx[slot] = (int)i;
                cand_val[slot] = ranked_score(scores, i, stride, col);
            }
        }
    }
}

// The ST_TAKEN candidates (at most k) sorted into out_idx/out_val[0 .. k), best first; unused slots get −1.
extern "C" __global__ void topk_radix_sort_f32(int k, const unsigned* state, const int* cand_idx,
                                               const float* cand_val, int* out_idx, float* out_val) {
    __shared__ float sv[TOPK_SLICE / 2];
    __shared__ int si[TOPK_SLICE / 2];
    int len = 2;
    while (len < k) len <<= 1;
    int m = min((int)state[ST_TAKEN], k);
    for (int t = threadIdx.x; t < len; t += blockDim.x) {
        sv[t] = t < m ? cand_val[t] : NEG_INF;
        si[t] = t < m ? cand_idx[t] : 0x7fffffff;
    }
    __syncthreads();
    bitonic_sort(sv, si, len);
    write_sorted(k, sv, si, out_idx, out_val);
}

// A k past one block's sort (k > TOPK_SLICE / 2): the candidates sorted on the device by tiles, then merges.
//   topk_tile_sort_f32: block t sorts candidates [t·TOPK_SLICE, (t+1)·TOPK_SLICE) into out_idx/out_val; slots
//                       past the ST_TAKEN candidates get −∞ and INT_MAX (they rank last). grid = tiles.
//   topk_merge_f32:     each pair of sorted runs of `width` into one run of 2·width (the last pair may be short),
//                       one thread an element: its place in its own run plus, by binary search, the elements
//                       of the other run that rank before it (before or equal, for the second run's: equal
//                       padding then keeps distinct places). Any grid (threads stride over the elements).
extern "C" __global__ void topk_tile_sort_f32(int k, const unsigned* state, const int* cand_idx,
                                              const float* cand_val, int* out_idx, float* out_val) {
    __shared__ float sv[TOPK_SLICE];
    __shared__ int si[TOPK_SLICE];
    long m = min((int)state[ST_TAKEN], k), base = (long)blockIdx.x * TOPK_SLICE;
    for (int t = threadIdx.x; t < TOPK_SLICE; t += blockDim.x) {
        bool valid = base + t < m;
        sv[t] = valid ? cand_val[base + t] : NEG_INF;
        si[t] = valid ? cand_idx[base + t] : 0x7fffffff;
    }
    __syncthreads();
    bitonic_sort(sv, si, TOPK_SLICE);
    for (int t = threadIdx.x; t < TOPK_SLICE; t += blockDim.x) {
        out_idx[base + t] = si[t];
        out_val[base + t] = sv[t];
    }
}

// Elements of run[0 .. len) (sorted best first) that rank before (v, i), or with `or_equal` before or equal.
DEVI int rank_in(const float* val, const int* idx, int len, float v, int i, bool or_equal) {
    int lo = 0, hi = len;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        bool before = ranks_before(val[mid], idx[mid], v, i) || (or_equal && val[mid] == v && idx[mid] == i);
        if (before) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

extern "C" __global__ void topk_merge_f32(int len, int width, const int* in_idx, const float* in_val, int* out_idx,
                                          float* out_val) {
    for (long e = (long)blockIdx.x * blockDim.x + threadIdx.x; e < len; e += (long)gridDim.x * blockDim.x) {
        long a0 = e / (2L * width) * (2L * width), b0 = min(a0 + width, (long)len), end = min(a0 + 2L * width, (long)len);
        float v = in_val[e];
        int i = in_idx[e];
        bool first = e < b0;  // in the pair's first run
        long other = first ? b0 : a0, other_len = first ? end - b0 : b0 - a0;
        long place = (e - (first ? a0 : b0)) + rank_in(in_val + other, in_idx + other, (int)other_len, v, i, !first);
        out_idx[a0 + place] = i;
        out_val[a0 + place] = v;
    }
}
