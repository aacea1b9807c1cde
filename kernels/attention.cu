// kernels/attention.cu — fused multi-head attention forward, flash-attention style (online softmax, the
// T x T score matrix never leaves registers), on mma.sync.m16n8k16 with f32 accumulation.
//
//   o[b, i, h·D : (h+1)·D] = Σ_j softmax_j(scale · q_i·k_j) v_j      (per batch b, head h, query i)
//
// q: [B, Tq, ·] with row stride ld_q elements, head h at columns h·D … h·D+D−1; likewise k, v ([B, Tk, ·]) and
// o ([B, Tq, ·], ld_o). So the outputs of three separate projections ([B, T, H·D]) are used directly, and so
// is a fused qkv buffer (ld = 3·H·D, pointers offset by H·D). With `causal`, query i sees keys
// j <= i + Tk − Tq. Needs D % 8 == 0 (D ∈ {64, 80, 96, 128}), every ld a multiple of 8 and 16-byte aligned
// pointers (cp.async of 16-byte chunks); otherwise the launcher runs attention_fwd_generic_* (end of file).
//
// Block: 4 warps = 128 threads own 64 queries of one (b, h); warp w owns queries 16w … 16w+15 (a warp whose
// queries all lie past Tq only helps load). Keys and values stream through shared memory 64 at a time, double
// buffered: tile kt+1 loads while tile kt is used, 64 keys scored at once (att_keys; the tail16 kernels take
// the last, partial tile 16 keys at a time). Launch: grid (ceil(Tq/64), H, B), block 128,
// shared (5·64·(D+8))·2 bytes (Q, and two K and V tiles; rows padded by 8 elements against bank conflicts).
#include "common.cuh"
#include "attention.cuh"

#define ATT_BQ 64
#define ATT_BK 64
#define ATT_THREADS 128

// rows x D tile of a [·, ld] matrix (rows row0 … row0+rows−1 < nrows, columns col0 …) into shared [rows][D+8],
// by `nthreads` threads.
template <int D, class T>
DEVI void att_load_tile(T* dst, const T* src, int ld, int nrows, int row0, int col0, int rows = ATT_BK,
                        int nthreads = ATT_THREADS) {
    constexpr int CHUNKS = D / 8;
    for (int c = threadIdx.x; c < rows * CHUNKS; c += nthreads) {
        int r = c / CHUNKS, d = (c % CHUNKS) * 8;
        bool ok = row0 + r < nrows;
        cp_async_16(dst + r * (D + 8) + d, ok ? src + (long)(row0 + r) * ld + col0 + d : src, ok);
    }
}

// One block of NKEY keys (64, or 16 for what is left of Tk after the whole 64-key tiles), rows 0 … NKEY−1 of
// Ks / Vs, keys k0 … of the sequence, for this warp's 16 queries from qrow0: s = q·kᵀ, the online-softmax
// update of the lane's two rows (g, g+8), o += p·v. MASK: keys past Tk, and with `causal` past the diagonal, get
// −inf (tiles inside both bounds skip the test). The scale folds into exp2's FMA; it is positive (launcher), so
// the raw scores' maximum is the scaled one's. FTZ: exponentials by exp2_ftz (1 instruction, not 4).
template <int D, int NKEY, bool MASK, bool FTZ, class T>
DEVI void att_keys(const u32 (&qf)[D / 16][4], const T* Ks, const T* Vs, int k0, int qrow0, int Tq, int Tk,
                   int causal, float sl2, float (&oacc)[D / 8][4], float (&mrow)[2], float (&lrow)[2]) {
    constexpr int LDS = D + 8, KS = D / 16, NT = D / 8, NS = NKEY / 8;
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    float s[NS][4];
    UNROLL for (int i = 0; i < NS; ++i) UNROLL for (int e = 0; e < 4; ++e) s[i][e] = 0.0f;
    UNROLL for (int ks = 0; ks < KS; ++ks) UNROLL for (int p = 0; p < NKEY / 16; ++p) {
        u32 r[4];
        ldmatrix_x4(r, Ks + (p * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + ks * 16 + ((lane >> 3) & 1) * 8);
        u32 b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
        mma_m16n8k16<T>(s[2 * p], qf[ks], b0);
        mma_m16n8k16<T>(s[2 * p + 1], qf[ks], b1);
    }
    float mx[2] = {NEG_INF, NEG_INF};
    UNROLL for (int i = 0; i < NS; ++i) UNROLL for (int e = 0; e < 4; ++e) {
        if (MASK) {
            int key = k0 + i * 8 + 2 * t + (e & 1);
            int row = qrow0 + g + (e >= 2 ? 8 : 0);
            bool ok = key < Tk && (!causal || key <= row + Tk - Tq);
            s[i][e] = ok ? s[i][e] : NEG_INF;
        }
        mx[e >> 1] = fmaxf(mx[e >> 1], s[i][e]);
    }
    float alpha[2], base[2];
    att_softmax_rescale<FTZ>(mx, mrow, lrow, sl2, alpha, base);
    UNROLL for (int i = 0; i < NT; ++i) UNROLL for (int e = 0; e < 4; ++e) oacc[i][e] *= alpha[e >> 1];
    UNROLL for (int i = 0; i < NS; ++i) UNROLL for (int e = 0; e < 4; ++e) {
        float x = fmaf(s[i][e], sl2, -base[e >> 1]);  // −inf (masked) gives 0
        s[i][e] = FTZ ? exp2_ftz(x) : exp2f(x);
        lrow[e >> 1] += s[i][e];
    }
    // o += p·v: the C fragments of two key n-tiles are the A fragment of one 16-key k-step.
    UNROLL for (int j = 0; j < NKEY / 16; ++j) {
        u32 a[4] = {pack2<T>(s[2 * j][0], s[2 * j][1]), pack2<T>(s[2 * j][2], s[2 * j][3]),
                    pack2<T>(s[2 * j + 1][0], s[2 * j + 1][1]), pack2<T>(s[2 * j + 1][2], s[2 * j + 1][3])};
        UNROLL for (int dp = 0; dp < NT / 2; ++dp) {
            u32 r[4];
            ldmatrix_x4_trans(r, Vs + (j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + dp * 16 + (lane >> 4) * 8);
            u32 b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
            mma_m16n8k16<T>(oacc[2 * dp], a, b0);
            mma_m16n8k16<T>(oacc[2 * dp + 1], a, b1);
        }
    }
}

// TAIL16: whole key tiles inside Tk (and not causal) skip the mask, the last, partial tile goes 16 keys at a
// time, so 197 keys cost 208 rather than 256, and exponentials take one instruction (exp2_ftz)
// (attention_fwd_tail16_*, opt-in until measured on a GPU).
// Otherwise every key tile is 64 masked keys (the kernel as tuned on an H100). WIDE: the block has any number
// of warps (blockDim.x / 32), one per 16 queries, so one block can hold every query of a (b, h).
template <int D, bool TAIL16, bool WIDE = false, class T>
DEVI void attention_body(int B, int H, int Tq, int Tk, int ld_q, int ld_k, int ld_v, int ld_o, const T* q,
                         const T* k, const T* v, T* o, float scale, int causal) {
    constexpr int LDS = D + 8;
    constexpr int KS = D / 16;  // k-steps of q·kᵀ
    constexpr int NT = D / 8;   // n-tiles of the output
    int nthreads = WIDE ? (int)blockDim.x : ATT_THREADS, bq = WIDE ? nthreads / 2 : ATT_BQ;  // 16 queries a warp
    T* Qs = DYN_SMEM(T);
    T* Kbuf = Qs + bq * LDS;            // [2][BK][LDS]
    T* Vbuf = Kbuf + 2 * ATT_BK * LDS;  // [2][BK][LDS]
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * bq;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const T* qb = q + (long)b * Tq * ld_q;
    const T* kb = k + (long)b * Tk * ld_k;
    const T* vb = v + (long)b * Tk * ld_v;
    float sl2 = scale * 1.4426950408889634f;  // exp(x) = exp2(x·log2 e)
    int qrow0 = q0 + warp * 16;

    bool active = qrow0 < Tq;
    att_load_tile<D>(Qs, qb, ld_q, Tq, q0, h * D, bq, nthreads);

    int kv_end = Tk;
    if (causal) kv_end = min(Tk, q0 + bq + Tk - Tq);  // keys past the last query's diagonal are masked
    int ntiles = kv_end > 0 ? ceil_div(kv_end, ATT_BK) : 0;

    u32 qf[KS][4];
    float oacc[NT][4];
    UNROLL for (int i = 0; i < NT; ++i) UNROLL for (int e = 0; e < 4; ++e) oacc[i][e] = 0.0f;
    float mrow[2] = {NEG_INF, NEG_INF}, lrow[2] = {0.0f, 0.0f};

    if (ntiles > 0) {
        att_load_tile<D>(Kbuf, kb, ld_k, Tk, 0, h * D, ATT_BK, nthreads);
        att_load_tile<D>(Vbuf, vb, ld_v, Tk, 0, h * D, ATT_BK, nthreads);
    }
    cp_async_commit();  // group: Q and tile 0
    for (int kt = 0; kt < ntiles; ++kt) {
        int k0 = kt * ATT_BK;
        if (kt + 1 < ntiles) {  // its buffer was last read in iteration kt-1, which ended with a barrier
            int nb = (kt + 1) & 1;
            att_load_tile<D>(Kbuf + nb * ATT_BK * LDS, kb, ld_k, Tk, k0 + ATT_BK, h * D, ATT_BK, nthreads);
            att_load_tile<D>(Vbuf + nb * ATT_BK * LDS, vb, ld_v, Tk, k0 + ATT_BK, h * D, ATT_BK, nthreads);
        }
        cp_async_commit();  // (possibly empty) group of tile kt+1
        cp_async_wait<1>();  // every group but the newest has landed: Q and tile kt
        __syncthreads();
        const T* Ks = Kbuf + (kt & 1) * ATT_BK * LDS;
        const T* Vs = Vbuf + (kt & 1) * ATT_BK * LDS;
        if (!active) {
            __syncthreads();
            continue;
        }
        if (kt == 0) {
            UNROLL for (int ks = 0; ks < KS; ++ks)
                ldmatrix_x4(qf[ks], Qs + (warp * 16 + (lane & 15)) * LDS + ks * 16 + (lane >> 4) * 8);
        }
        int nkeys = min(ATT_BK, kv_end - k0);
        if (!TAIL16 || (nkeys == ATT_BK && causal))
            att_keys<D, 64, true, TAIL16>(qf, Ks, Vs, k0, qrow0, Tq, Tk, causal, sl2, oacc, mrow, lrow);
        else if (nkeys == ATT_BK)
            att_keys<D, 64, false, TAIL16>(qf, Ks, Vs, k0, qrow0, Tq, Tk, causal, sl2, oacc, mrow, lrow);
        else
            for (int j = 0; j < nkeys; j += 16)
                att_keys<D, 16, true, TAIL16>(qf, Ks + j * LDS, Vs + j * LDS, k0 + j, qrow0, Tq, Tk, causal, sl2, oacc,
                                      mrow, lrow);
        __syncthreads();  // tile kt's buffers are free for tile kt+2
    }
    cp_async_wait<0>();
    if (active) att_store_rows<NT>(o + (long)b * Tq * ld_o + h * D, ld_o, qrow0 + g, Tq, oacc, lrow);
}

// One entry point per head dim and dtype: (B, H, Tq, Tk, ld_q, ld_k, ld_v, ld_o, q, k, v, o, scale, causal).
#define ATT_SIZES int B, int H, int Tq, int Tk, int ld_q, int ld_k, int ld_v, int ld_o
#define ATT_PASS B, H, Tq, Tk, ld_q, ld_k, ld_v, ld_o, q, k, v, o, scale, causal
extern "C" __global__ void __launch_bounds__(128, 3) attention_fwd_d64_bf16(ATT_SIZES, const bf16_t* q, const bf16_t* k,
        const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_body<64, false>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_d80_bf16(ATT_SIZES, const bf16_t* q, const bf16_t* k,
        const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_body<80, false>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_d96_bf16(ATT_SIZES, const bf16_t* q, const bf16_t* k,
        const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_body<96, false>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_d128_bf16(ATT_SIZES, const bf16_t* q, const bf16_t* k,
        const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_body<128, false>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128, 3) attention_fwd_d64_f16(ATT_SIZES, const f16_t* q, const f16_t* k,
        const f16_t* v, f16_t* o, float scale, int causal) {
    attention_body<64, false>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_d80_f16(ATT_SIZES, const f16_t* q, const f16_t* k,
        const f16_t* v, f16_t* o, float scale, int causal) {
    attention_body<80, false>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_d96_f16(ATT_SIZES, const f16_t* q, const f16_t* k,
        const f16_t* v, f16_t* o, float scale, int causal) {
    attention_body<96, false>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_d128_f16(ATT_SIZES, const f16_t* q, const f16_t* k,
        const f16_t* v, f16_t* o, float scale, int causal) {
    attention_body<128, false>(ATT_PASS);
}

// The last key tile in 16-key steps (TAIL16), head dim 64: CPEAL_ATTENTION=tail16; tail16x4 asks for four
// blocks per SM on sm_90 (128 registers, which the TAIL16 body fits there without spilling; the tiled one does
// not, nor does sm_80's code, which keeps three).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define ATT_X4_BLOCKS 3
#else
#define ATT_X4_BLOCKS 4
#endif
extern "C" __global__ void __launch_bounds__(128, 3) attention_fwd_tail16_d64_bf16(ATT_SIZES, const bf16_t* q,
        const bf16_t* k, const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_body<64, true>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128, 3) attention_fwd_tail16_d64_f16(ATT_SIZES, const f16_t* q,
        const f16_t* k, const f16_t* v, f16_t* o, float scale, int causal) {
    attention_body<64, true>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128, ATT_X4_BLOCKS) attention_fwd_tail16x4_d64_bf16(ATT_SIZES, const bf16_t* q,
        const bf16_t* k, const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_body<64, true>(ATT_PASS);
}
extern "C" __global__ void __launch_bounds__(128, ATT_X4_BLOCKS) attention_fwd_tail16x4_d64_f16(ATT_SIZES, const f16_t* q,
        const f16_t* k, const f16_t* v, f16_t* o, float scale, int causal) {
    attention_body<64, true>(ATT_PASS);
}

// TAIL16 with one warp per 16 queries and as many warps as the launch gives (WIDE): one block per (b, h) when
// Tq <= 208 (13 warps, 416 threads; <= 152 registers), so no warp idles past Tq but in the last 16 and K, V
// are read once per (b, h). CPEAL_ATTENTION=tail16w. Launch: grid (1, H, B), block 32·ceil(Tq/16),
// shared (16·ceil(Tq/16) + 4·64)·(D+8)·2 bytes.
extern "C" __global__ void __maxnreg__(152) attention_fwd_tail16w_d64_bf16(ATT_SIZES, const bf16_t* q,
        const bf16_t* k, const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_body<64, true, true>(ATT_PASS);
}
extern "C" __global__ void __maxnreg__(152) attention_fwd_tail16w_d64_f16(ATT_SIZES, const f16_t* q,
        const f16_t* k, const f16_t* v, f16_t* o, float scale, int causal) {
    attention_body<64, true, true>(ATT_PASS);
}

// ---------------------------------------------------------------------------------------------------------
// Generic fallback: any head dim 1 … 256, any row strides and alignment, no tensor cores. Same arguments and
// semantics as the kernels above (a fully masked query row gives zeros). One warp per query row: q is staged
// in shared memory as f32; keys go 32 at a time, lane l scoring key k0+l (a serial dot product over D), then
// the chunk's online-softmax update, and o[lane + 32c] += p_j · v[j, lane + 32c] with p_j broadcast by
// shuffle. Launch: grid (ceil(Tq/4), H, B), block 128, no dynamic shared memory.
// ---------------------------------------------------------------------------------------------------------
#define ATTG_WARPS 4
#define ATTG_MAXD 256

template <class T>
DEVI void attention_generic_body(int B, int H, int Tq, int Tk, int ld_q, int ld_k, int ld_v, int ld_o, int D,
                                 const T* q, const T* k, const T* v, T* o, float scale, int causal) {
    constexpr int C = ATTG_MAXD / 32;  // output columns per lane
    __shared__ float qs[ATTG_WARPS][ATTG_MAXD];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int b = blockIdx.z, h = blockIdx.y, i = blockIdx.x * ATTG_WARPS + warp;
    if (i >= Tq) return;  // the whole warp leaves together; no block-wide barrier follows
    const T* qr = q + ((long)b * Tq + i) * ld_q + h * D;
    const T* kb = k + (long)b * Tk * ld_k + h * D;
    const T* vb = v + (long)b * Tk * ld_v + h * D;
    float sl2 = scale * 1.4426950408889634f;  // exp(x) = exp2(x·log2 e)
    for (int d = lane; d < D; d += 32) qs[warp][d] = to_f32(qr[d]) * sl2;
    __syncwarp();

    int kv_end = causal ? min(Tk, i + Tk - Tq + 1) : Tk;
    float oacc[C];
    UNROLL for (int c = 0; c < C; ++c) oacc[c] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    for (int k0 = 0; k0 < kv_end; k0 += 32) {
        int n = min(32, kv_end - k0);  // warp-uniform
        float s = NEG_INF;
        if (lane < n) {
            const T* kr = kb + (long)(k0 + lane) * ld_k;
            float acc = 0.0f;
            for (int d = 0; d < D; ++d) acc += qs[warp][d] * to_f32(kr[d]);
            s = acc;
        }
        float mnew = fmaxf(m, warp_max(s));  // finite: the chunk has at least one key
        float alpha = exp2f(m - mnew);       // m = −inf on the first chunk: alpha = 0
        float p = lane < n ? exp2f(s - mnew) : 0.0f;
        l = l * alpha + warp_sum(p);
        m = mnew;
        UNROLL for (int c = 0; c < C; ++c) oacc[c] *= alpha;
        for (int j = 0; j < n; ++j) {
            float pj = __shfl_sync(0xffffffffu, p, j);
            const T* vr = vb + (long)(k0 + j) * ld_v;
            UNROLL for (int c = 0; c < C; ++c) {
                int d = lane + 32 * c;
                if (d < D) oacc[c] += pj * to_f32(vr[d]);
            }
        }
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    T* orow = o + ((long)b * Tq + i) * ld_o + h * D;
    UNROLL for (int c = 0; c < C; ++c) {
        int d = lane + 32 * c;
        if (d < D) orow[d] = from_f32<T>(oacc[c] * inv);
    }
}

// (B, H, Tq, Tk, ld_q, ld_k, ld_v, ld_o, D, q, k, v, o, scale, causal): the sizes above plus the head dim D.
#define ATTG_PASS B, H, Tq, Tk, ld_q, ld_k, ld_v, ld_o, D, q, k, v, o, scale, causal
extern "C" __global__ void __launch_bounds__(128) attention_fwd_generic_bf16(ATT_SIZES, int D, const bf16_t* q,
        const bf16_t* k, const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_generic_body(ATTG_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_generic_f16(ATT_SIZES, int D, const f16_t* q,
        const f16_t* k, const f16_t* v, f16_t* o, float scale, int causal) {
    attention_generic_body(ATTG_PASS);
}
extern "C" __global__ void __launch_bounds__(128) attention_fwd_generic_f32(ATT_SIZES, int D, const float* q,
        const float* k, const float* v, float* o, float scale, int causal) {
    attention_generic_body(ATTG_PASS);
}
