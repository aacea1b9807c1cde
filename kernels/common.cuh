// kernels/common.cuh — helpers shared by every kernel file: storage types and conversions, reductions, and
// the warp-level tensor-core helpers (inline PTX on the GPU; a C++ model of the same fragment layouts under
// CPEAL_EMU). Needs no CUDA header, so NVRTC compiles it with no include path.
#pragma once

#define DEVI __device__ __forceinline__
// Full unroll of a loop with a compile-time trip count (register arrays must only be indexed by constants).
#ifdef CPEAL_EMU
#define UNROLL
#else
#define UNROLL _Pragma("unroll")
#endif

typedef unsigned int u32;
typedef unsigned short u16;

DEVI int ceil_div(int a, int b) { return (a + b - 1) / b; }
#define NEG_INF (__uint_as_float(0xff800000u))

// ---------------------------------------------------------------------------------------------------------
// Storage types: raw 16-bit patterns. All arithmetic is f32: load with to_f32, store with from_f32<T>.
// ---------------------------------------------------------------------------------------------------------
struct bf16_t {
    u16 bits;
};
struct f16_t {
    u16 bits;
};

#ifdef CPEAL_EMU
DEVI float to_f32(bf16_t v) { return cpeal_emu::bf16_bits_to_f32(v.bits); }
DEVI float to_f32(f16_t v) { return cpeal_emu::f16_bits_to_f32(v.bits); }
DEVI u16 bf16_bits(float f) { return cpeal_emu::f32_to_bf16_bits(f); }
DEVI u16 f16_bits(float f) { return cpeal_emu::f32_to_f16_bits(f); }
#else
DEVI float to_f32(bf16_t v) { return __uint_as_float(((u32)v.bits) << 16); }
DEVI float to_f32(f16_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
}
DEVI u16 bf16_bits(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
DEVI u16 f16_bits(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif
DEVI float to_f32(float v) { return v; }

template <class T>
struct Cvt;
template <>
struct Cvt<float> {
    static DEVI float from(float f) { return f; }
};
template <>
struct Cvt<bf16_t> {
    static DEVI bf16_t from(float f) { return bf16_t{bf16_bits(f)}; }
};
template <>
struct Cvt<f16_t> {
    static DEVI f16_t from(float f) { return f16_t{f16_bits(f)}; }
};
template <class T>
DEVI T from_f32(float f) {
    return Cvt<T>::from(f);
}

// Two 16-bit values in one register, `lo` in the low half (the layout of mma fragments).
template <class T>
DEVI u32 pack2(float lo, float hi) {
    return (u32)from_f32<T>(lo).bits | ((u32)from_f32<T>(hi).bits << 16);
}
template <class T>
DEVI float lo_f32(u32 v) {
    T t;
    t.bits = (u16)(v & 0xffffu);
    return to_f32(t);
}
template <class T>
DEVI float hi_f32(u32 v) {
    T t;
    t.bits = (u16)(v >> 16);
    return to_f32(t);
}

// Two adjacent elements p[0], p[1] in one 4-byte store (p must be 4-byte aligned).
template <class T>
DEVI void store_pair(T* p, float a, float b) {
#ifdef CPEAL_EMU
    u32 v = pack2<T>(a, b);
    std::memcpy(p, &v, 4);
#else
    *reinterpret_cast<u32*>(p) = pack2<T>(a, b);
#endif
}

// 16 bytes of global memory at p (16-byte aligned, not written during the kernel) as four words.
DEVI void ld_global_16(u32 (&r)[4], const void* p) {
#ifdef CPEAL_EMU
    std::memcpy(r, p, 16);
#else
    asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "l"(p));
#endif
}

// The same, through the coherent path: for memory this kernel may have written (an in-place residual).
DEVI void ld_global_16_coherent(u32 (&r)[4], const void* p) {
#ifdef CPEAL_EMU
    std::memcpy(r, p, 16);
#else
    asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "l"(p));
#endif
}

// Four words to 16 bytes of global memory at p (16-byte aligned).
DEVI void st_global_16(void* p, const u32 (&r)[4]) {
#ifdef CPEAL_EMU
    std::memcpy(p, r, 16);
#else
    asm volatile("st.global.v4.u32 [%0], {%1,%2,%3,%4};" ::"l"(p), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
#endif
}

// 8 consecutive elements at p (16-byte aligned) as f32, by 16-byte loads (one of 16-bit values, two of floats):
// through the non-coherent path, for memory the kernel does not write, unless COHERENT (an in-place residual, or
// the kernel's own output read back). And the converse store.
template <bool COHERENT>
DEVI void ld_global_16_as(u32 (&r)[4], const void* p) {
    if constexpr (COHERENT) ld_global_16_coherent(r, p);
    else ld_global_16(r, p);
}
template <class T, bool COHERENT = false>
DEVI void load8(float (&v)[8], const T* p) {
    if constexpr (sizeof(T) == 4) {
        UNROLL for (int h = 0; h < 2; ++h) {
            u32 r[4];
            ld_global_16_as<COHERENT>(r, p + 4 * h);
            UNROLL for (int e = 0; e < 4; ++e) v[4 * h + e] = __uint_as_float(r[e]);
        }
    } else {
        u32 r[4];
        ld_global_16_as<COHERENT>(r, p);
        UNROLL for (int e = 0; e < 4; ++e) v[2 * e] = lo_f32<T>(r[e]), v[2 * e + 1] = hi_f32<T>(r[e]);
    }
}
template <class T>
DEVI void store8(T* p, const float (&v)[8]) {
    if constexpr (sizeof(T) == 4) {
        UNROLL for (int h = 0; h < 2; ++h) {
            u32 r[4];
            UNROLL for (int e = 0; e < 4; ++e) r[e] = __float_as_uint(v[4 * h + e]);
            st_global_16(p + 4 * h, r);
        }
    } else {
        u32 r[4];
        UNROLL for (int e = 0; e < 4; ++e) r[e] = pack2<T>(v[2 * e], v[2 * e + 1]);
        st_global_16(p, r);
    }
}
// Whether every pointer given is 16-byte aligned (null ones count as aligned).
template <class... P>
DEVI bool aligned16(const P*... p) {
    return ((((unsigned long long)p) & 15) | ... | 0ull) == 0;
}

// ---------------------------------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------------------------------
// 2^x by the special-function unit alone (ex2.approx.ftz: a result below 2^-126 flushes to 0), where exp2f adds
// a range test and two multiplies for subnormal results (4 instructions, not 1). For softmax weights, which a
// subnormal cannot change at bf16/f16 precision.
DEVI float exp2_ftz(float x) {
#ifdef CPEAL_EMU
    float r = std::exp2(x);
    return r < 1.1754943508222875e-38f ? 0.0f : r;
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
#endif
}
// 0.5·x·(1 + erf(x/√2)) = 0.5·x·(x ≥ 0 ? 2 − c : c), c = erfc(|x|/√2) = 2^P(u), u = min(|x|, 4√2): one
// special-function op (ex2) and 7 FMAs per element, where erff branches and a rational erfc needs a reciprocal
// too; GELU is most of the fc1 GEMM's epilogue. P is fitted by scripts/fit-gelu.py: |c − erfc| ≤ 1.2e-7,
// |GELU error| ≤ 1.6e-7 on [−8, 8]. Beyond the clamp c < 2e-8.
DEVI float gelu_erf(float x) {
    float u = fminf(fabsf(x), 5.65685425f);
    float p = fmaf(u, 8.892571714e-06f, -5.793885066e-05f);
    p = fmaf(u, p, -4.066377005e-04f);
    p = fmaf(u, p, 7.364010438e-03f);
    p = fmaf(u, p, -5.266940966e-02f);
    p = fmaf(u, p, -4.591618180e-01f);
    p = fmaf(u, p, -1.151109695e+00f);
    p = fmaf(u, p, 6.523411855e-08f);
    float c = exp2_ftz(p);
    return 0.5f * x * (x >= 0.0f ? 2.0f - c : c);
}
// x·σ(1.702·x) = x / d, d = 1 + 2^(−1.702·log2(e)·x): one ex2, and 1/d by three Newton steps from a bit-pattern
// seed (5% → 0.3% → 1e-5 → 1e-10, then f32 rounding) on the FMA pipe. With a MUFU reciprocal (or `/`, which
// also adds a slow-path call) the special-function unit, at 16 results a clock per SM, would bound the GEMM
// epilogue. The exponent is capped at 120 so that d stays finite and the seed a normal number: below
// x = −48.9 the result is off by more than f32 rounding but under 1e-33 in size.
DEVI float quick_gelu(float x) {
    float d = 1.0f + exp2_ftz(fminf(-2.455466960f * x, 120.0f));
    float r = __int_as_float(0x7EF311C7 - __float_as_int(d));
    UNROLL for (int i = 0; i < 3; ++i) r = fmaf(r, fmaf(-d, r, 1.0f), r);
    return x * r;
}

// The epilogue terms of gemm.cu and gemm_sm90.cu; a null pointer skips its term. `row_stats` ([M][2] f32: mean,
// rstd) with `col_sum` ([N] f32) is a LayerNorm folded into the GEMM: A is the un-normalised x, W carries gamma
// (G = gamma ⊙ W, col_sum[n] = Σ_k G[n,k]) and bias carries beta (W·beta + b), so that
// LN(x)·Wᵀ + b = rstd·(x·Gᵀ − mean·col_sum) + bias and LN(x) is never written. `row_partials`, an output, takes
// the statistics of C's rows for the LayerNorm of the next GEMM: per row and window of W columns (W per kernel:
// the launcher's `partial_width`), the window's mean and centred sum of squares over the values as stored
// ([M][ceil(N/W)][2] f32; layernorm_stats_merge_f32 combines them).
template <class T>
struct GemmEpi {
    const T* bias;
    const T* residual;
    const T* layer_scale;
    const float* row_stats;
    const float* col_sum;
    float* row_partials;
    int ldr;
    int act;
};

// The C signature of the GEMM kernels fed by ordinary or cp.async loads (gemm.cu, gemm_sm90.cu's cp.async variants)
// for storage type T, in the order src/gpu/ops/gemm.rs packs it, and what an entry point passes its body:
// (M, N, K, lda, ldw, ldc, A, W, epilogue, C).
#define GEMM_PARAMS(T)                                                                                                \
    int M, int N, int K, int lda, int ldw, int ldr, int ldc, const T *A, const T *W, const T *bias,                  \
        const T *residual, const T *layer_scale, const float *row_stats, const float *col_sum, T *C,                 \
        float *row_partials, int act
#define GEMM_ARGS(T)                                                                                                  \
    M, N, K, lda, ldw, ldc, A, W, GemmEpi<T>{bias, residual, layer_scale, row_stats, col_sum, row_partials, ldr, act}, C

// A folded LayerNorm's normalisation of one product v = x·G[n] of row m: rstd_m·(v − mean_m·col_sum[n]).
DEVI float folded_norm(float v, float mean, float rstd, float col_sum) { return rstd * (v - mean * col_sum); }

// residual + layer_scale · act(v + bias), absent terms skipped: the epilogue after the row normalisation.
template <class T>
DEVI float gemm_epilogue_terms(float v, int m, int n, const GemmEpi<T>& e) {
    if (e.bias) v += to_f32(e.bias[n]);
    if (e.act == 1) v = gelu_erf(v);
    else if (e.act == 2) v = quick_gelu(v);
    if (e.layer_scale) v *= to_f32(e.layer_scale[n]);
    if (e.residual) v += to_f32(e.residual[(long)m * e.ldr + n]);
    return v;
}

// The whole epilogue: residual + layer_scale · act(norm(acc) + bias).
template <class T>
DEVI float gemm_epilogue(float acc, int m, int n, const GemmEpi<T>& e) {
    if (e.row_stats) acc = folded_norm(acc, e.row_stats[2 * (long)m], e.row_stats[2 * (long)m + 1], e.col_sum[n]);
    return gemm_epilogue_terms(acc, m, n, e);
}

// Keeps the compiler from moving memory accesses across this point: for a thread that reads back what it stored
// through another pointer type (store_pair's u32), which type-based alias analysis would let it reorder.
DEVI void compiler_barrier() {
#ifndef CPEAL_EMU
    asm volatile("" ::: "memory");
#endif
}

// Sum over aligned groups of LANES consecutive lanes (a power of two <= 32); every lane of the warp calls.
template <int LANES>
DEVI float group_sum(float v) {
    for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One row's statistics over a window of `count` columns held by an aligned group of LANES lanes, 8 values each
// (bit e of `valid`: v[e] is one of them): the window's mean and centred sum of squares, written to out[0],
// out[1] by the group's first lane when `write`. Two passes, so a large mean does not cancel. Every lane of the
// warp calls.
template <int LANES>
DEVI void row_partial_stats(const float (&v)[8], unsigned valid, int count, bool write, float* out) {
    float s = 0.0f;
    UNROLL for (int e = 0; e < 8; ++e) if (valid >> e & 1) s += v[e];
    float total = group_sum<LANES>(s), mean = count > 0 ? __fdividef(total, (float)count) : 0.0f;  // count <= 256
    float q = 0.0f;
    UNROLL for (int e = 0; e < 8; ++e) if (valid >> e & 1) q += (v[e] - mean) * (v[e] - mean);
    q = group_sum<LANES>(q);
    if (write && count > 0 && (threadIdx.x & (LANES - 1)) == 0) out[0] = mean, out[1] = q;
}

// ---------------------------------------------------------------------------------------------------------
// Reductions. Blocks are 1-D with blockDim.x a multiple of 32; every thread of the block must call.
// `scratch` is 32 floats of shared memory; the result reaches every thread.
// ---------------------------------------------------------------------------------------------------------
DEVI float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
DEVI float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
DEVI float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < nwarps ? scratch[lane] : 0.0f);
}
DEVI float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_max(lane < nwarps ? scratch[lane] : NEG_INF);
}
// Exclusive prefix sum of v over the block's threads in thread order; `total` gets the sum over the block. The
// additions run in a fixed order and nothing is subtracted, so a floating-point scan is the same on every run.
// scratch: 32 values of shared memory.
template <class T>
DEVI T block_scan(T v, T* scratch, T& total) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    T x = v;  // inclusive within the warp
    for (int o = 1; o < 32; o <<= 1) {
        T y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    T before = __shfl_up_sync(0xffffffffu, x, 1);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 31) scratch[warp] = x;
    __syncthreads();
    T w = lane < nwarps ? scratch[lane] : T(0);  // every warp scans the warp totals
    for (int o = 1; o < 32; o <<= 1) {
        T y = __shfl_up_sync(0xffffffffu, w, o);
        if (lane >= o) w += y;
    }
    T w_before = __shfl_up_sync(0xffffffffu, w, 1);
    total = __shfl_sync(0xffffffffu, w, nwarps - 1);
    T warps_before = __shfl_sync(0xffffffffu, w_before, warp);
    return (warp == 0 ? T(0) : warps_before) + (lane == 0 ? T(0) : before);
}

// Dynamic shared memory (the launch's shared_bytes), 16-byte aligned.
#ifdef CPEAL_EMU
#define DYN_SMEM(T) (reinterpret_cast<T*>(cpeal_emu::dyn_smem()))
#else
extern __shared__ __align__(16) unsigned char cpeal_dyn_smem[];
#define DYN_SMEM(T) (reinterpret_cast<T*>(cpeal_dyn_smem))
#endif

// A shared-memory load or store of one V (4, 8 or 16 bytes) whose bank conflicts the emulator counts (emu_banks.h,
// gpu::emu::count_banks): a plain access on the GPU. Hot shared accesses go through these.
#ifdef CPEAL_EMU
template <class V>
inline V lds(const V* p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    cpeal_emu::note_shared(p, sizeof(V), false, file, line);
    return *p;
}
template <class V>
inline void sts(V* p, const V& v, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    cpeal_emu::note_shared(p, sizeof(V), true, file, line);
    *p = v;
}
#else
template <class V>
DEVI V lds(const V* p) {
    return *p;
}
template <class V>
DEVI void sts(V* p, const V& v) {
    *p = v;
}
#endif

// ---------------------------------------------------------------------------------------------------------
// Tensor-core helpers (sm_80+). Fragment layouts of mma.m16n8k16 with g = lane/4, t = lane%4:
//   A (16x16, row-major) a[0]=(g, 2t..2t+1) a[1]=(g+8, 2t..) a[2]=(g, 2t+8..) a[3]=(g+8, 2t+8..)
//   B (16x8, k-major)    b[0]=(k 2t..2t+1, n g) b[1]=(k 2t+8.., n g)
//   C (16x8, f32)        c[0..1]=(g, 2t..2t+1) c[2..3]=(g+8, 2t..2t+1)
// ldmatrix_x4: lanes 8i..8i+7 give the row addresses (16 bytes each) of 8x8 matrix i; register i of lane l
// gets row l/4, elements 2(l%4)..+1 of matrix i (the _trans form: column l/4, rows 2(l%4)..+1).
// ---------------------------------------------------------------------------------------------------------
#ifdef CPEAL_EMU
template <class T>
DEVI void mma_m16n8k16(float c[4], const u32 a[4], const u32 b[2]) {
    cpeal_emu::Warp& w = cpeal_emu::cur_warp();
    int lane = cpeal_emu::lane_id();
    for (int i = 0; i < 4; ++i) w.frag_a[lane][i] = a[i];
    for (int i = 0; i < 2; ++i) w.frag_b[lane][i] = b[i];
    cpeal_emu::warp_barrier();
    int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) {
        int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        float s = 0.0f;
        for (int k = 0; k < 16; ++k) {
            u32 ra = w.frag_a[(row & 7) * 4 + (k & 7) / 2][(row >> 3) + 2 * (k >> 3)];
            u32 rb = w.frag_b[col * 4 + (k & 7) / 2][k >> 3];
            float av = (k & 1) ? hi_f32<T>(ra) : lo_f32<T>(ra);
            float bv = (k & 1) ? hi_f32<T>(rb) : lo_f32<T>(rb);
            s += av * bv;
        }
        c[i] += s;
    }
    cpeal_emu::warp_barrier();
}
template <bool Trans>
DEVI void ldmatrix_x4_impl(u32 r[4], const void* smem_row, const char* file, int line) {
    cpeal_emu::Warp& w = cpeal_emu::cur_warp();
    int lane = cpeal_emu::lane_id();
    cpeal_emu::note_shared(smem_row, 16, false, file, line);
    w.ptr[lane] = smem_row;
    cpeal_emu::warp_barrier();
    for (int i = 0; i < 4; ++i) {
        if (!Trans) {
            const unsigned char* row = static_cast<const unsigned char*>(w.ptr[i * 8 + lane / 4]);
            std::memcpy(&r[i], row + (lane % 4) * 4, 4);
        } else {
            u16 lo, hi;
            const unsigned char* r0 = static_cast<const unsigned char*>(w.ptr[i * 8 + (lane % 4) * 2]);
            const unsigned char* r1 = static_cast<const unsigned char*>(w.ptr[i * 8 + (lane % 4) * 2 + 1]);
            std::memcpy(&lo, r0 + (lane / 4) * 2, 2);
            std::memcpy(&hi, r1 + (lane / 4) * 2, 2);
            r[i] = (u32)lo | ((u32)hi << 16);
        }
    }
    cpeal_emu::warp_barrier();
}
// Shared-memory addresses (of dynamic shared memory only) are offsets into the block's buffer.
DEVI u32 smem_addr(const void* p) { return cpeal_emu::smem_offset(p); }
// The emulator's versions take the caller's file and line, for the bank model (emu_banks.h).
DEVI void ldmatrix_x4(u32 r[4], const void* smem_row, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ldmatrix_x4_impl<false>(r, smem_row, file, line);
}
DEVI void ldmatrix_x4_trans(u32 r[4], const void* smem_row, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
    ldmatrix_x4_impl<true>(r, smem_row, file, line);
}
// 16 bytes global -> shared, asynchronously; zero-filled when !pred (gsrc is then not read).
DEVI void cp_async_16(void* smem_dst, const void* gsrc, bool pred, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    cpeal_emu::note_shared(smem_dst, 16, true, file, line);
    cpeal_emu::cp_async(smem_dst, gsrc, pred ? 16 : 0);
}
DEVI void cp_async_commit() { cpeal_emu::cp_async_commit(); }
template <int N>
DEVI void cp_async_wait() {
    cpeal_emu::cp_async_wait(N);
}
#else
DEVI void mma_bf16(float c[4], const u32 a[4], const u32 b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
DEVI void mma_f16(float c[4], const u32 a[4], const u32 b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <class T>
DEVI void mma_m16n8k16(float c[4], const u32 a[4], const u32 b[2]);
template <>
DEVI void mma_m16n8k16<bf16_t>(float c[4], const u32 a[4], const u32 b[2]) {
    mma_bf16(c, a, b);
}
template <>
DEVI void mma_m16n8k16<f16_t>(float c[4], const u32 a[4], const u32 b[2]) {
    mma_f16(c, a, b);
}
DEVI u32 smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }
DEVI void ldmatrix_x4(u32 r[4], const void* smem_row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem_row)));
}
DEVI void ldmatrix_x4_trans(u32 r[4], const void* smem_row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem_row)));
}
DEVI void cp_async_16(void* smem_dst, const void* gsrc, bool pred) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem_dst)), "l"(gsrc),
                 "r"(pred ? 16 : 0));
}
DEVI void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
DEVI void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
#endif
