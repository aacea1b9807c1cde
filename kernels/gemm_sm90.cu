// kernels/gemm_sm90.cu — the GEMM of gemm.cu on Hopper's warpgroup tensor-core instructions (sm_90a only; the
// emulator and pre-Hopper GPUs use gemm.cu, which computes the same function):
//
//   C[m,n] = residual[m,n] + layer_scale[n] · act( Σ_k A[m,k]·W[n,k] + bias[n] )      (see gemm.cu)
//
// Tiling: 128 x BN x 64 block tile, 256 threads = 2 warpgroups; warpgroup g owns rows [64g, 64g+64) and all BN
// columns, issued as wgmma.m64n128k16 (f32 accumulators in registers, both operands read from shared memory).
// Operands go global -> shared by a STAGES-deep cp.async pipeline (16-byte chunks, zero-filled past the edges)
// into the 128-byte-swizzled K-major layout wgmma reads: row r of a 64-wide K tile is 128 bytes at r·128, its
// 16-byte chunk c stored at chunk c ^ (r & 7); tiles are 1024-byte aligned (the swizzle's period).
// Needs K, lda, ldw multiples of 8 and 16-byte aligned A, W (the launcher falls back to gemm.cu otherwise).
//
// Launch: grid (ceil(N/BN), ceil(M/128)), block 256, shared gemm_sm90_smem_bytes(BN, STAGES) (see the launcher).
#include "common.cuh"

#define G90_BM 128
#define G90_BK 64

#ifndef CPEAL_EMU
// Shared-memory matrix descriptor for a K-major tile in the 128-byte swizzle: start address, leading byte
// offset (unused by this layout; 1 by convention), stride byte offset 1024 (next group of 8 rows), swizzle mode 1.
DEVI unsigned long long g90_desc(const void* tile) {
    unsigned long long addr = smem_addr(tile);
    return ((addr & 0x3FFFFull) >> 4) | (1ull << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}
DEVI void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
DEVI void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
DEVI void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// cp.async writes shared memory through the generic proxy; wgmma reads it through the async proxy.
DEVI void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving accumulator accesses across an in-flight wgmma.
DEVI void g90_pin(float& x) { asm volatile("" : "+f"(x)::"memory"); }

DEVI void wgmma_m64n128k16_bf16(float (&d)[64], unsigned long long da, unsigned long long db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(1));
}

DEVI void wgmma_m64n128k16_f16(float (&d)[64], unsigned long long da, unsigned long long db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(1));
}

template <class T>
DEVI void wgmma_m64n128k16(float (&d)[64], unsigned long long da, unsigned long long db);
template <>
DEVI void wgmma_m64n128k16<bf16_t>(float (&d)[64], unsigned long long da, unsigned long long db) {
    wgmma_m64n128k16_bf16(d, da, db);
}
template <>
DEVI void wgmma_m64n128k16<f16_t>(float (&d)[64], unsigned long long da, unsigned long long db) {
    wgmma_m64n128k16_f16(d, da, db);
}

struct __align__(16) F4 {
    float x, y, z, w;
};

// 8 consecutive 16-bit elements at p (16-byte aligned) as f32, with a coherent load (the residual may be the
// output itself), and the converse store.
template <class T>
DEVI void load_vec8(float (&v)[8], const T* p) {
    u32 r[4];
    asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "l"(p));
    UNROLL for (int e = 0; e < 4; ++e) {
        v[2 * e] = lo_f32<T>(r[e]);
        v[2 * e + 1] = hi_f32<T>(r[e]);
    }
}
template <class T>
DEVI void store_vec8(T* p, const float (&v)[8]) {
    u32 r[4];
    UNROLL for (int e = 0; e < 4; ++e) r[e] = pack2<T>(v[2 * e], v[2 * e + 1]);
    asm volatile("st.global.v4.u32 [%0], {%1,%2,%3,%4};\n" ::"l"(p), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
}

// The epilogue goes through shared memory (free once the main loop is done): each consumer thread parks its
// accumulators in an f32 tile [128][BN + 8], then the consumers walk the tile in rows of 8-column chunks, so
// bias, layer scale, residual and output move in coalesced 16-byte vectors and the per-element code is one
// short loop rather than 64 unrolled copies (which overflowed the instruction cache).
// Accumulator layout of m64nNk16 (per warp of the warpgroup, like mma.m16n8 tiled along N): register
// 4·q + 2·h + e holds row 16·warp + lane/4 + 8·h, column 8·q + 2·(lane%4) + e.
template <int NB>
DEVI void g90_park(float (&acc)[NB][64], float* tile, int row0) {
    constexpr int LDT = NB * 128 + 8;
    int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    int g = lane >> 2, t = lane & 3;
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int q = 0; q < 16; ++q) UNROLL for (int h = 0; h < 2; ++h) {
        float* p = tile + (row0 + warp * 16 + g + 8 * h) * LDT + j * 128 + q * 8 + 2 * t;
        p[0] = acc[j][4 * q + 2 * h];
        p[1] = acc[j][4 * q + 2 * h + 1];
    }
}

// C[m0 + r, n0 + c] for the whole 128 x BN tile from `tile`, by `nthreads` threads numbered from 0 (`tid`).
template <class T, int BN>
DEVI void g90_store(const float* tile, int tid, int nthreads, int m0, int n0, int M, int N, int ldr, int ldc,
                    const T* bias, const T* residual, const T* layer_scale, T* C, int act) {
    constexpr int LDT = BN + 8, CHUNKS = BN / 8;
    // 16-byte vectors need every row start and every pointer 16-byte aligned (8 elements of 2 bytes).
    bool vec = ((ldc | (residual ? ldr : 0)) & 7) == 0 &&
               (((unsigned long long)C | (unsigned long long)residual | (unsigned long long)bias |
                 (unsigned long long)layer_scale) & 15) == 0;
    for (int i = tid; i < G90_BM * CHUNKS; i += nthreads) {
        int r = i / CHUNKS, c = (i % CHUNKS) * 8;
        int m = m0 + r, n = n0 + c;
        if (m >= M || n >= N) continue;
        const float* src = tile + r * LDT + c;
        if (vec && n + 8 <= N) {
            float v[8], w[8];
            UNROLL for (int h = 0; h < 2; ++h) {  // two 16-byte shared loads (src is 16-byte aligned)
                F4 q = reinterpret_cast<const F4*>(src)[h];
                v[4 * h] = q.x, v[4 * h + 1] = q.y, v[4 * h + 2] = q.z, v[4 * h + 3] = q.w;
            }
            if (bias) {
                load_vec8<T>(w, bias + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] += w[e];
            }
            if (act == 1) {
                UNROLL for (int e = 0; e < 8; ++e) v[e] = gelu_erf(v[e]);
            } else if (act == 2) {
                UNROLL for (int e = 0; e < 8; ++e) v[e] = quick_gelu(v[e]);
            }
            if (layer_scale) {
                load_vec8<T>(w, layer_scale + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] *= w[e];
            }
            if (residual) {
                load_vec8<T>(w, residual + (long)m * ldr + n);
                UNROLL for (int e = 0; e < 8; ++e) v[e] += w[e];
            }
            store_vec8<T>(C + (long)m * ldc + n, v);
        } else {
            for (int e = 0; e < 8 && n + e < N; ++e)
                C[(long)m * ldc + n + e] = from_f32<T>(gemm_epilogue(src[e], m, n + e, ldr, bias, residual, layer_scale, act));
        }
    }
}

// Rows [row0, row0+rows_tile) x columns [k0, k0+64) of a [rows, K] matrix into a swizzled shared tile.
template <class T, int ROWS>
DEVI void g90_load_tile(char* dst, const T* src, int ld, int rows, int K, int row0, int k0) {
    UNROLL for (int i = 0; i < ROWS * 8 / 256; ++i) {
        int c = threadIdx.x + i * 256;
        int r = c >> 3, ch = c & 7;
        int gr = row0 + r, gk = k0 + ch * 8;
        bool ok = gr < rows && gk < K;
        cp_async_16(dst + r * 128 + ((ch ^ (r & 7)) << 4), ok ? src + (long)gr * ld + gk : src, ok);
    }
}

template <class T, int BN, int STAGES>
DEVI void g90_body(int M, int N, int K, int lda, int ldw, int ldr, int ldc, const T* A, const T* W, const T* bias,
                   const T* residual, const T* layer_scale, T* C, int act) {
    constexpr int A_BYTES = G90_BM * 128, B_BYTES = BN * 128, STAGE_BYTES = A_BYTES + B_BYTES;
    constexpr int NB = BN / 128;  // wgmma n128 issues per k16 step
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    int bm = blockIdx.y * G90_BM, bn = blockIdx.x * BN;
    int wg = threadIdx.x >> 7;
    float acc[NB][64];
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) acc[j][e] = 0.0f;

    // With 4+ stages one wgmma group stays in flight while the next tile's barrier and loads are issued; the
    // stage a load overwrites is then two tiles back (prefetch distance STAGES-2), whose wgmma has retired.
    constexpr bool INFLIGHT = STAGES >= 4;
    constexpr int DIST = INFLIGHT ? STAGES - 2 : STAGES - 1;
    int ktiles = ceil_div(K, G90_BK);
    for (int s = 0; s < DIST; ++s) {
        if (s < ktiles) {
            g90_load_tile<T, G90_BM>(smem + s * STAGE_BYTES, A, lda, M, K, bm, s * G90_BK);
            g90_load_tile<T, BN>(smem + s * STAGE_BYTES + A_BYTES, W, ldw, N, K, bn, s * G90_BK);
        }
        cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<DIST - 1>();  // tile kt has landed (this thread's chunks) ...
        fence_proxy_async();        // ... and is visible to the async proxy ...
        __syncthreads();            // ... for every thread; the wgmma groups of tile kt-DIST+... have retired
        int pre = kt + DIST;
        if (pre < ktiles) {
            char* st = smem + (pre % STAGES) * STAGE_BYTES;
            g90_load_tile<T, G90_BM>(st, A, lda, M, K, bm, pre * G90_BK);
            g90_load_tile<T, BN>(st + A_BYTES, W, ldw, N, K, bn, pre * G90_BK);
        }
        cp_async_commit();
        const char* st = smem + (kt % STAGES) * STAGE_BYTES;
        unsigned long long da = g90_desc(st + wg * 64 * 128);
        unsigned long long db = g90_desc(st + A_BYTES);
        wgmma_fence();
        UNROLL for (int kk = 0; kk < G90_BK / 16; ++kk) {
            // +32 bytes per k16 step inside the swizzled row: the descriptor's address field is in 16-byte units.
            UNROLL for (int j = 0; j < NB; ++j)
                wgmma_m64n128k16<T>(acc[j], da + 2 * kk, db + (unsigned long long)(j * 128 * 128 / 16) + 2 * kk);
        }
        wgmma_commit();
        if (INFLIGHT) wgmma_wait<1>();  // the previous tile's group has retired; this one runs on
        else wgmma_wait<0>();
    }
    wgmma_wait<0>();
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) g90_pin(acc[j][e]);
    cp_async_wait<0>();

    float* tile = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warpgroup is done reading the operand stages
    g90_park<NB>(acc, tile, wg * 64);
    __syncthreads();
    g90_store<T, BN>(tile, threadIdx.x, 256, bm, bn, M, N, ldr, ldc, bias, residual, layer_scale, C, act);
}

// ---------------------------------------------------------------------------------------------------------
// Warp-specialised variant: the tensor memory accelerator (TMA) loads each operand tile straight into the
// swizzled layout and signals an mbarrier; 384 threads = warpgroup 0 (one thread issues the loads) + two
// consumer warpgroups (wgmma). Stage s has a "full" barrier (1 arrival + the tile's bytes) and an "empty"
// barrier (one arrival per consumer warpgroup once its wgmma group reading s has retired).
// ---------------------------------------------------------------------------------------------------------
struct __align__(64) TmaMap {
    unsigned long long v[16];
};

DEVI void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
DEVI void mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
DEVI void mbar_arrive(u32 bar) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory"); }
DEVI void mbar_wait(u32 bar, u32 parity) {
    u32 done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}
// Box (c0 = column, c1 = row) of the matrix `map` describes into shared memory at dst; completes on bar.
DEVI void tma_load_2d(u32 dst, const TmaMap* map, int c0, int c1, u32 bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            dst),
        "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}

// LEAN: the producer is one warp after the two consumer warpgroups (288 threads, so two blocks fit an SM's
// registers) instead of a whole leading warpgroup (384 threads).
template <class T, int BN, int STAGES, bool LEAN>
DEVI void g90_tma_body(int M, int N, int K, int ldr, int ldc, const TmaMap* amap, const TmaMap* wmap, const T* bias,
                       const T* residual, const T* layer_scale, T* C, int act) {
    constexpr int A_BYTES = G90_BM * 128, B_BYTES = BN * 128, STAGE_BYTES = A_BYTES + B_BYTES;
    constexpr int NB = BN / 128;
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    u32 full0 = smem_addr(smem + STAGES * STAGE_BYTES), empty0 = full0 + 8 * STAGES;
    int bm = blockIdx.y * G90_BM, bn = blockIdx.x * BN;
    int ktiles = ceil_div(K, G90_BK);
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full0 + 8 * s, 1);
            mbar_init(empty0 + 8 * s, 2);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    constexpr int CBASE = LEAN ? 0 : 128;  // first consumer thread (a multiple of 128: warpgroups stay aligned)
    int ct = threadIdx.x - CBASE;
    if (LEAN ? threadIdx.x >= 256 : threadIdx.x < 128) {
        if (threadIdx.x == (LEAN ? 256 : 0)) {
            for (int kt = 0; kt < ktiles; ++kt) {
                int s = kt % STAGES;
                if (kt >= STAGES) mbar_wait(empty0 + 8 * s, ((kt / STAGES) - 1) & 1);
                u32 full = full0 + 8 * s, dst = smem_addr(smem + s * STAGE_BYTES);
                mbar_expect_tx(full, STAGE_BYTES);
                tma_load_2d(dst, amap, kt * G90_BK, bm, full);
                tma_load_2d(dst + A_BYTES, wmap, kt * G90_BK, bn, full);
            }
        }
        return;  // no barrier of the whole block follows
    }
    int cw = ct >> 7;
    float acc[NB][64];
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) acc[j][e] = 0.0f;
    for (int kt = 0; kt < ktiles; ++kt) {
        int s = kt % STAGES;
        mbar_wait(full0 + 8 * s, (kt / STAGES) & 1);
        const char* st = smem + s * STAGE_BYTES;
        unsigned long long da = g90_desc(st + cw * 64 * 128);
        unsigned long long db = g90_desc(st + A_BYTES);
        wgmma_fence();
        UNROLL for (int kk = 0; kk < G90_BK / 16; ++kk) {
            UNROLL for (int j = 0; j < NB; ++j)
                wgmma_m64n128k16<T>(acc[j], da + 2 * kk, db + (unsigned long long)(j * 128 * 128 / 16) + 2 * kk);
        }
        wgmma_commit();
        wgmma_wait<1>();  // tile kt-1's group has retired: its stage may be refilled
        if (kt > 0 && (ct & 127) == 0) mbar_arrive(empty0 + 8 * ((kt - 1) % STAGES));
    }
    wgmma_wait<0>();
    UNROLL for (int j = 0; j < NB; ++j) UNROLL for (int e = 0; e < 64; ++e) g90_pin(acc[j][e]);
    // The producer has left; the 256 consumer threads synchronise on named barrier 1.
    float* tile = reinterpret_cast<float*>(smem);
    asm volatile("bar.sync 1, 256;\n" ::: "memory");  // both consumers are done reading the operand stages
    g90_park<NB>(acc, tile, cw * 64);
    asm volatile("bar.sync 1, 256;\n" ::: "memory");
    g90_store<T, BN>(tile, ct, 256, bm, bn, M, N, ldr, ldc, bias, residual, layer_scale, C, act);
}
#endif

// Variants: BN x STAGES (n128s3: 97 KiB of shared memory, two blocks per SM, each tile's wgmma retired before
// the next; n128s4: 129 KiB, one block, one wgmma group in flight; n256s4: 193 KiB, one block, in flight).
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s4_bf16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const bf16_t* A, const bf16_t* W, const bf16_t* bias, const bf16_t* residual, const bf16_t* layer_scale, bf16_t* C, int act) {
    g90_body<bf16_t, 128, 4>(M, N, K, lda, ldw, ldr, ldc, A, W, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s4_f16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const f16_t* A, const f16_t* W, const f16_t* bias, const f16_t* residual, const f16_t* layer_scale, f16_t* C, int act) {
    g90_body<f16_t, 128, 4>(M, N, K, lda, ldw, ldr, ldc, A, W, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s3_bf16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const bf16_t* A, const bf16_t* W, const bf16_t* bias, const bf16_t* residual, const bf16_t* layer_scale, bf16_t* C, int act) {
    g90_body<bf16_t, 128, 3>(M, N, K, lda, ldw, ldr, ldc, A, W, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n128s3_f16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const f16_t* A, const f16_t* W, const f16_t* bias, const f16_t* residual, const f16_t* layer_scale, f16_t* C, int act) {
    g90_body<f16_t, 128, 3>(M, N, K, lda, ldw, ldr, ldc, A, W, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n256s4_bf16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const bf16_t* A, const bf16_t* W, const bf16_t* bias, const bf16_t* residual, const bf16_t* layer_scale, bf16_t* C, int act) {
    g90_body<bf16_t, 256, 4>(M, N, K, lda, ldw, ldr, ldc, A, W, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(256) gemm_sm90_n256s4_f16(int M, int N, int K, int lda, int ldw, int ldr,
        int ldc, const f16_t* A, const f16_t* W, const f16_t* bias, const f16_t* residual, const f16_t* layer_scale, f16_t* C, int act) {
    g90_body<f16_t, 256, 4>(M, N, K, lda, ldw, ldr, ldc, A, W, bias, residual, layer_scale, C, act);
}

// TMA variants (384 threads, one block per SM): n128s5 161 KiB of shared memory, n256s3 145 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n128s5_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, bf16_t* C, int act) {
    g90_tma_body<bf16_t, 128, 5, false>(M, N, K, ldr, ldc, &amap, &wmap, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n128s5_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, f16_t* C, int act) {
    g90_tma_body<f16_t, 128, 5, false>(M, N, K, ldr, ldc, &amap, &wmap, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n256s3_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, bf16_t* C, int act) {
    g90_tma_body<bf16_t, 256, 3, false>(M, N, K, ldr, ldc, &amap, &wmap, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_tma_n256s3_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, f16_t* C, int act) {
    g90_tma_body<f16_t, 256, 3, false>(M, N, K, ldr, ldc, &amap, &wmap, bias, residual, layer_scale, C, act);
}
// Lean TMA variant (288 threads, two blocks per SM): n128s3, 97 KiB of shared memory.
extern "C" __global__ void __launch_bounds__(288, 2) gemm_sm90_tmaw_n128s3_bf16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const bf16_t* bias, const bf16_t* residual,
        const bf16_t* layer_scale, bf16_t* C, int act) {
    g90_tma_body<bf16_t, 128, 3, true>(M, N, K, ldr, ldc, &amap, &wmap, bias, residual, layer_scale, C, act);
}
extern "C" __global__ void __launch_bounds__(288, 2) gemm_sm90_tmaw_n128s3_f16(int M, int N, int K, int ldr, int ldc,
        const __grid_constant__ TmaMap amap, const __grid_constant__ TmaMap wmap, const f16_t* bias, const f16_t* residual,
        const f16_t* layer_scale, f16_t* C, int act) {
    g90_tma_body<f16_t, 128, 3, true>(M, N, K, ldr, ldc, &amap, &wmap, bias, residual, layer_scale, C, act);
}
