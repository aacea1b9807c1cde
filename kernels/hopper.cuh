// kernels/hopper.cuh — Hopper (sm_90a) helpers for the `*_sm90.cu` files, after common.cuh: wgmma on
// 128-byte-swizzled K-major shared tiles, mbarriers, bulk tensor copies (TMA), named barriers, register
// reallocation. Inline PTX on the GPU; under CPEAL_EMU the model in emu_sm90.h, so the same kernels run (and are
// tested) on the CPU.
#pragma once

// A CUtensorMap, passed by value as a __grid_constant__ kernel parameter (the emulator writes its own layout).
struct __align__(64) TmaMap {
    unsigned long long v[16];
};

// Shared-memory matrix descriptor for a K-major tile in the 128-byte swizzle: start address, leading byte offset
// (unused by this layout; 1 by convention), stride byte offset 1024 (next group of 8 rows), swizzle mode 1.
// Adding 2 advances the start by 32 bytes (one k16 step inside the swizzled row; the field is in 16-byte units).
DEVI unsigned long long wgmma_desc_sw128(const void* tile) {
    unsigned long long addr = smem_addr(tile);
    return ((addr & 0x3FFFFull) >> 4) | (1ull << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}

#ifdef CPEAL_EMU
DEVI void wgmma_fence() { cpeal_emu::wgmma_fence(); }
DEVI void wgmma_commit() { cpeal_emu::wgmma_commit(); }
template <int N>
DEVI void wgmma_wait() {
    cpeal_emu::wgmma_wait(N);
}
DEVI void fence_proxy_async() { cpeal_emu::fence_proxy_async(); }
DEVI void wgmma_pin(float&) {}
template <class T>
constexpr int wgmma_dtype() {
    return std::is_same<T, f16_t>::value ? 1 : 0;
}
template <class T>
DEVI void wgmma_m64n128k16(float (&d)[64], unsigned long long da, unsigned long long db) {
    cpeal_emu::wgmma_issue(d, 128, da, db, wgmma_dtype<T>());
}
template <class T>
DEVI void wgmma_m64n256k16(float (&d)[128], unsigned long long da, unsigned long long db) {
    cpeal_emu::wgmma_issue(d, 256, da, db, wgmma_dtype<T>());
}
template <class T>
DEVI void wgmma_m64n64k16(float (&d)[32], unsigned long long da, unsigned long long db) {
    cpeal_emu::wgmma_issue(d, 64, da, db, wgmma_dtype<T>());
}
template <class T>
DEVI void wgmma_m64n16k16(float (&d)[8], unsigned long long da, unsigned long long db) {
    cpeal_emu::wgmma_issue(d, 16, da, db, wgmma_dtype<T>());
}
template <class T>
DEVI void wgmma_m64n64k16_rs_mn(float (&d)[32], const u32 (&a)[4], unsigned long long db) {
    cpeal_emu::wgmma_issue_op(d, 64, 0, a, db, wgmma_dtype<T>(), true);
}
DEVI void mbar_init(u32 bar, u32 count) { cpeal_emu::mbar_init(bar, count); }
DEVI void fence_mbarrier_init() {}
DEVI void mbar_expect_tx(u32 bar, u32 bytes) { cpeal_emu::mbar_arrive(bar, bytes); }
DEVI void mbar_arrive(u32 bar) { cpeal_emu::mbar_arrive(bar, 0); }
DEVI void mbar_wait(u32 bar, u32 parity) { cpeal_emu::mbar_wait(bar, parity); }
DEVI void tma_load_2d(u32 dst, const TmaMap* map, int c0, int c1, u32 bar) {
    cpeal_emu::tma_load_2d(dst, map, c0, c1, bar);
}
DEVI void tma_load_2d_multicast(u32 dst, const TmaMap* map, int c0, int c1, u32 bar, unsigned short mask) {
    cpeal_emu::tma_load_2d_multicast(dst, map, c0, c1, bar, mask);
}
DEVI u32 cluster_ctarank() { return cpeal_emu::cluster_rank(); }
DEVI void cluster_sync() { cpeal_emu::cluster_barrier(); }
DEVI void mbar_arrive_cluster(u32 bar, u32 rank) { cpeal_emu::mbar_arrive_cluster(bar, rank); }
DEVI void named_barrier_sync(int id, int nthreads) { cpeal_emu::named_barrier(id, nthreads, true); }
DEVI void named_barrier_arrive(int id, int nthreads) { cpeal_emu::named_barrier(id, nthreads, false); }
template <int REGS>
DEVI void setmaxnreg_inc() {
    static_assert(REGS % 8 == 0 && REGS >= 24 && REGS <= 256, "setmaxnreg: a multiple of 8 in 24..256");
    cpeal_emu::setmaxnreg(REGS, true);
}
template <int REGS>
DEVI void setmaxnreg_dec() {
    static_assert(REGS % 8 == 0 && REGS >= 24 && REGS <= 256, "setmaxnreg: a multiple of 8 in 24..256");
    cpeal_emu::setmaxnreg(REGS, false);
}
#else
DEVI void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
DEVI void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
DEVI void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// cp.async and ordinary stores write shared memory through the generic proxy; wgmma and TMA use the async proxy.
DEVI void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving accumulator accesses across an in-flight wgmma.
DEVI void wgmma_pin(float& x) { asm volatile("" : "+f"(x)::"memory"); }

// The bf16 and f16 specialisations of a wgmma wrapper NAME with parameters PARAMS, whose body is MACRO(type).
#define CPEAL_WGMMA_TYPES(NAME, PARAMS, MACRO)                                                                        \
    template <>                                                                                                       \
    DEVI void NAME<bf16_t> PARAMS {                                                                                   \
        MACRO("bf16");                                                                                                \
    }                                                                                                                 \
    template <>                                                                                                       \
    DEVI void NAME<f16_t> PARAMS {                                                                                    \
        MACRO("f16");                                                                                                 \
    }

#define CPEAL_WGMMA_N128(TYPE)                                                                                        \
    asm volatile(                                                                                                     \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                                  \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " "                                             \
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "  \
        "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "   \
        "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "        \
        "%64, %65, p, 1, 1, 0, 0;\n}\n"                                                                               \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),             \
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),       \
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),     \
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),     \
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),     \
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),     \
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),     \
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])      \
        : "l"(da), "l"(db), "r"(1))

// D[64 x 128] (f32, in registers) += A[64 x 16] · B[128 x 16]ᵀ, both operands in shared memory.
template <class T>
DEVI void wgmma_m64n128k16(float (&d)[64], unsigned long long da, unsigned long long db);
CPEAL_WGMMA_TYPES(wgmma_m64n128k16, (float (&d)[64], unsigned long long da, unsigned long long db), CPEAL_WGMMA_N128)
#undef CPEAL_WGMMA_N128

#define CPEAL_ACC8(i)                                                                                                 \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]),      \
        "+f"(d[i + 7])
#define CPEAL_REGS32                                                                                                  \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "  \
    "%24, %25, %26, %27, %28, %29, %30, %31}"
#define CPEAL_REGS128 \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, " \
    "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, " \
    "%62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, " \
    "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, " \
    "%101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, " \
    "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
// D[64 x 256] += A[64 x 16] · B[256 x 16]ᵀ, both operands K-major in shared memory (128 accumulators a thread).
#define CPEAL_WGMMA_N256(TYPE)                                                                                        \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                                       \
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " " CPEAL_REGS128                       \
                 ", %128, %129, p, 1, 1, 0, 0;\n}\n"                                                                  \
                 : CPEAL_ACC8(0), CPEAL_ACC8(8), CPEAL_ACC8(16), CPEAL_ACC8(24), CPEAL_ACC8(32), CPEAL_ACC8(40),      \
                   CPEAL_ACC8(48), CPEAL_ACC8(56), CPEAL_ACC8(64), CPEAL_ACC8(72), CPEAL_ACC8(80), CPEAL_ACC8(88),    \
                   CPEAL_ACC8(96), CPEAL_ACC8(104), CPEAL_ACC8(112), CPEAL_ACC8(120)                                  \
                 : "l"(da), "l"(db), "r"(1))
template <class T>
DEVI void wgmma_m64n256k16(float (&d)[128], unsigned long long da, unsigned long long db);
CPEAL_WGMMA_TYPES(wgmma_m64n256k16, (float (&d)[128], unsigned long long da, unsigned long long db), CPEAL_WGMMA_N256)
#undef CPEAL_WGMMA_N256
#undef CPEAL_REGS128
#define CPEAL_WGMMA_N64(TYPE)                                                                                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                        \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " CPEAL_REGS32                         \
                 ", %32, %33, p, 1, 1, 0, 0;\n}\n"                                                                    \
                 : CPEAL_ACC8(0), CPEAL_ACC8(8), CPEAL_ACC8(16), CPEAL_ACC8(24)                                        \
                 : "l"(da), "l"(db), "r"(1))
#define CPEAL_WGMMA_N16(TYPE)                                                                                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"                                                        \
                 "wgmma.mma_async.sync.aligned.m64n16k16.f32." TYPE "." TYPE " {%0, %1, %2, %3, %4, %5, %6, %7}, "     \
                 "%8, %9, p, 1, 1, 0, 0;\n}\n"                                                                        \
                 : CPEAL_ACC8(0)                                                                                      \
                 : "l"(da), "l"(db), "r"(1))
// A from registers; B MN-major (imm-trans-b 1).
#define CPEAL_WGMMA_N64_RS_MN(TYPE)                                                                                   \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                        \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " CPEAL_REGS32                         \
                 ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                                       \
                 : CPEAL_ACC8(0), CPEAL_ACC8(8), CPEAL_ACC8(16), CPEAL_ACC8(24)                                        \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1))

// D[64 x 64] += A[64 x 16] · B[64 x 16]ᵀ and D[64 x 16] += A · B[16 x 16]ᵀ, operands K-major in shared memory.
template <class T>
DEVI void wgmma_m64n64k16(float (&d)[32], unsigned long long da, unsigned long long db);
CPEAL_WGMMA_TYPES(wgmma_m64n64k16, (float (&d)[32], unsigned long long da, unsigned long long db), CPEAL_WGMMA_N64)
template <class T>
DEVI void wgmma_m64n16k16(float (&d)[8], unsigned long long da, unsigned long long db);
CPEAL_WGMMA_TYPES(wgmma_m64n16k16, (float (&d)[8], unsigned long long da, unsigned long long db), CPEAL_WGMMA_N16)
// D[64 x 64] += A[64 x 16] · B[16 x 64]: A from registers (each warp the mma.m16n8k16 A fragment of its 16 rows),
// B in shared memory MN-major (a 128-byte row of 64 N values per k, 8-row atoms 1024 bytes apart).
template <class T>
DEVI void wgmma_m64n64k16_rs_mn(float (&d)[32], const u32 (&a)[4], unsigned long long db);
CPEAL_WGMMA_TYPES(wgmma_m64n64k16_rs_mn, (float (&d)[32], const u32 (&a)[4], unsigned long long db),
                  CPEAL_WGMMA_N64_RS_MN)
#undef CPEAL_WGMMA_N64
#undef CPEAL_WGMMA_N16
#undef CPEAL_WGMMA_N64_RS_MN
#undef CPEAL_REGS32
#undef CPEAL_ACC8
#undef CPEAL_WGMMA_TYPES

DEVI void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes initialised mbarriers visible to the async proxy (TMA) and the other threads.
DEVI void fence_mbarrier_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// One arrival that also expects `bytes` of bulk-copy transactions in this phase.
DEVI void mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
DEVI void mbar_arrive(u32 bar) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory"); }
// Until the phase of this parity has completed.
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
// The same box into the shared memory of every block of the cluster whose bit is set in `mask`, at the same
// address, each block's mbarrier at `bar` completing its own bytes.
DEVI void tma_load_2d_multicast(u32 dst, const TmaMap* map, int c0, int c1, u32 bar, unsigned short mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, "
        "{%2, %3}], [%4], %5;\n" ::"r"(dst),
        "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(bar), "h"(mask)
        : "memory");
}
// This block's rank in its cluster (__cluster_dims__).
DEVI u32 cluster_ctarank() {
    u32 r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
// barrier.cluster: every thread of every block of the cluster (exited ones count as arrived), with release /
// acquire ordering of shared-memory writes across the cluster (mbarrier initialisation, say).
DEVI void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
// One arrival on the mbarrier at the same shared address in block `rank` of the cluster (mapa).
DEVI void mbar_arrive_cluster(u32 bar, u32 rank) {
    asm volatile(
        "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
        "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n}\n" ::"r"(bar),
        "r"(rank)
        : "memory");
}
// bar.sync on named barrier `id` (1..15; 0 is __syncthreads) for `nthreads` threads (a multiple of 32).
DEVI void named_barrier_sync(int id, int nthreads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}
// bar.arrive: counts towards the barrier's `nthreads` without waiting (pairs with other threads' bar.sync).
DEVI void named_barrier_arrive(int id, int nthreads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}
// Register reallocation between warpgroups (needs __launch_bounds__(threads, 1); every thread of the warpgroup).
template <int REGS>
DEVI void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
}
template <int REGS>
DEVI void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
}
#endif

// One k16 step D[64 x N] += A[64 x 16] · B[N x 16]ᵀ, both operands K-major in shared memory, N told by the
// accumulator (N / 2 registers a thread): n16, n64, n128 or n256.
template <class T>
DEVI void wgmma_k16(float (&d)[8], unsigned long long da, unsigned long long db) {
    wgmma_m64n16k16<T>(d, da, db);
}
template <class T>
DEVI void wgmma_k16(float (&d)[32], unsigned long long da, unsigned long long db) {
    wgmma_m64n64k16<T>(d, da, db);
}
template <class T>
DEVI void wgmma_k16(float (&d)[64], unsigned long long da, unsigned long long db) {
    wgmma_m64n128k16<T>(d, da, db);
}
template <class T>
DEVI void wgmma_k16(float (&d)[128], unsigned long long da, unsigned long long db) {
    wgmma_m64n256k16<T>(d, da, db);
}

// Rows [row0, row0 + ROWS) x columns [k0, k0 + 64) of a [rows, K] matrix (row stride ld) into a 128-byte-swizzled
// K-major shared tile by cp.async of 16-byte chunks, zero-filled past the matrix, by THREADS threads: row r is
// 128 bytes at r·128, its 16-byte chunk c stored at chunk c ^ (r & 7).
template <class T, int ROWS, int THREADS = 256>
DEVI void load_tile_sw128(char* dst, const T* src, int ld, int rows, int K, int row0, int k0) {
    static_assert(ROWS * 8 % THREADS == 0, "every thread loads the same number of chunks");
    UNROLL for (int i = 0; i < ROWS * 8 / THREADS; ++i) {
        int c = threadIdx.x + i * THREADS;
        int r = c >> 3, ch = c & 7;
        int gr = row0 + r, gk = k0 + ch * 8;
        bool ok = gr < rows && gk < K;
        cp_async_16(dst + r * 128 + ((ch ^ (r & 7)) << 4), ok ? src + (long)gr * ld + gk : src, ok);
    }
}
