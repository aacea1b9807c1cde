// kernels/emu.h — the subset of CUDA C++ that cpeal's kernels use, emulated on the CPU with g++.
//
// build.rs compiles every kernels/*.cu with `g++ -std=c++17 -include kernels/emu.h -DCPEAL_EMU -O2` into a
// static library when the `cuda-emu` feature is on; src/gpu/emu.rs launches the kernels through the same
// grid / block / shared-bytes / void** arguments as cuLaunchKernel.
//
// Execution model
// - Blocks run one after another on the calling OS thread; the blocks of a thread block cluster (a kernel's
//   __cluster_dims__(x, 1, 1), read by build.rs) run together, their threads interleaved in one scheduler, one
//   of them taking two turns per pass so that it runs ahead. The threads of a block are cooperatively scheduled
//   fibers (emu_fiber.h), each with its own stack. A fiber runs until it reaches a synchronisation point
//   (__syncthreads, __syncwarp, a shuffle, a vote, ldmatrix, mma) and then yields to the scheduler, which
//   resumes the next fiber. Passes alternate direction (forward, backward, …; odd blocks start backward), so
//   a read of shared memory that another thread has not yet written — a missing barrier — gives a wrong value.
// - Warp collectives assume every live lane of the warp takes part (the `mask` argument is not modelled).
// - Threads that have exited count as arrived at block and warp barriers (as on sm_70+).
// - cp.async copies are held back until the matching cp.async.wait_group, so a missing wait shows up too.
// - Static __shared__ variables are `static thread_local` (zeroed once per OS thread and kept between blocks);
//   dynamic shared memory (DYN_SMEM in common.cuh) is refilled with 0xFF bytes (NaN) before every block.
// - A block whose threads all wait at barriers that can never complete is reported as a deadlock.
// - Bank model (emu_banks.h, off unless asked for): shared accesses through lds / sts, ldmatrix and cp.async are
//   logged per thread and, once a block is done, matched across a warp's lanes into warp instructions whose
//   wavefronts are counted per site.
// - Hopper (the `*_sm90.cu` files, through kernels/hopper.cuh): shared-memory addresses are offsets into the
//   block's dynamic shared memory; mbarriers keep phase, pending arrivals and transaction bytes; a bulk tensor
//   copy (TMA) lands at the end of the scheduler pass it was issued in, then completes its transaction bytes;
//   a wgmma is a warpgroup collective that retires at the end of the scheduler pass in which its 128 threads
//   have all issued it, reading its shared-memory operands then (the latest the hardware could), and
//   wgmma.wait_group waits for that; an asynchronous copy (TMA or cp.async) landing on the operands of a wgmma
//   in flight fails the launch (a stage refilled too early, or read before its barrier); named barriers
//   (bar.sync id, n) count arrivals per id; setmaxnreg moves registers between a warpgroup and the block's pool,
//   which starts empty with every register allocated at launch (regs_at_launch), so an .inc the pool can never
//   meet is a deadlock, as it is a hang on the GPU. Misuse (an mbarrier used before init, an address outside shared
//   memory, mismatched descriptors, a thread exiting with a wgmma in flight) fails the launch with a message.
//   Clusters: a multicast bulk copy lands in every block its mask names; an mbarrier may be arrived at or copied to
//   from another block only once a cluster barrier has completed after its initialisation, and only while that
//   block is still running.
#pragma once

#include "emu_fiber.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------------------------------------
// Keywords
// ---------------------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __grid_constant__
#define __maxnreg__(...)
#define __cluster_dims__(...)
#define warpSize 32

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

namespace cpeal_emu {

constexpr size_t kStackBytes = 256 * 1024;

struct PendingCopy {
    unsigned char* dst;
    unsigned char bytes[16];
    long group;
};

// One shared-memory access a thread made, for the bank model (emu_banks.h).
struct SharedAccess {
    uintptr_t addr;
    int bytes;
    bool store;
    const char* file;
    int line;
};

struct Thread {
    dim3 idx;
    int linear = 0;
    bool done = false;
    Fiber fiber;
    std::vector<PendingCopy> pending;
    long open_group = 0;     // id of the cp.async group not yet committed
    long wgmma_issued = 0;   // wgmma instructions this thread has issued
    long wgmma_group = 0;    // id of the wgmma group not yet committed
    long nreg_issued = 0;    // setmaxnreg instructions this thread has reached
    bool wgmma_fenced = false;       // a wgmma.fence since the thread's start or its last wgmma.wait_group
    std::vector<uint32_t> unfenced;  // 16-byte chunks of dynamic shared memory its cp.async landed in since
                                     // its last fence.proxy.async (invisible to wgmma and TMA until then)
    std::vector<SharedAccess> shared_log;  // for the bank model, while it counts (emu_banks.h)
};

// An mbarrier: phase parity, arrivals still expected in this phase, transaction bytes still expected.
struct Mbar {
    uint32_t count = 0;
    uint32_t pending = 0;
    uint32_t phase = 0;
    int64_t tx = 0;
    unsigned cluster_gen = 0;  // cluster barriers completed before its initialisation
};

// A bulk tensor copy in flight: the box at (c0 = column, c1 = row) of the matrix `map` describes.
struct BulkCopy {
    uint32_t dst;
    uint64_t map[8];
    int c0, c1;
    uint32_t bar;
};

// One wgmma instruction of a warpgroup: each thread's accumulators and the operands' descriptors.
struct WgmmaOp {
    float* d[128] = {};
    uint64_t da = 0, db = 0;
    uint32_t a[128][4];  // A from registers (a_regs): each thread's fragment, copied at issue,
    const uint32_t* a_src[128] = {};  // and where it lives, to check it is left alone until the wgmma retires
    bool a_regs = false; // A from registers rather than the shared tile at da
    bool tnsp_b = false; // B stored MN-major (N contiguous) rather than K-major
    int n = 0;          // the instruction's N
    int dtype = 0;      // 0 bf16, 1 f16
    long group = 0;     // the wgmma group it was committed in
    int issued = 0;     // threads that have issued it
};

struct WarpGroup {
    std::map<long, WgmmaOp> ops;  // by issue index, until executed
    int regs = 0;                 // registers a thread (setmaxnreg), from the block's count at launch
    long nreg_done = 0;           // setmaxnreg instructions completed by the whole warpgroup
    int nreg_arrived = 0;         // threads at the one in progress,
    int nreg_target = 0;          // its register count
    bool nreg_inc = false;        // and direction
};

// A barrier of `live` participants, complete when all have arrived (one that exits counts as arrived). Waiters
// watch `gen`, which the completing arrival bumps.
struct Rendezvous {
    int arrived = 0;
    unsigned gen = 0;
    // One arrival; true for the one that completes the barrier.
    bool arrive(int live) {
        if (++arrived < live) return false;
        release();
        return true;
    }
    // After a participant exited (live is the count left): complete the barrier if the rest have all arrived.
    void settle(int live) {
        if (arrived > 0 && arrived >= live) release();
    }
    void release() {
        arrived = 0;
        gen++;
    }
};

struct Warp {
    int lanes = 0;  // threads of the block in this warp
    int live = 0;
    Rendezvous bar;  // __syncwarp and the warp collectives
    uint64_t slot[32];
    const void* ptr[32];
    uint32_t frag_a[32][4];
    uint32_t frag_b[32][2];
};

struct Cluster;

struct Block {
    dim3 idx;                           // blockIdx
    int rank = 0;                       // %cluster_ctarank
    Cluster* cluster = nullptr;
    std::vector<Thread> threads;
    std::vector<Warp> warps;
    std::vector<unsigned char*> stacks;
    int live = 0;
    Rendezvous bar;   // __syncthreads
    long events = 0;  // arrivals, releases and exits: progress made by the block
    Fiber sched;                        // the scheduler (run_cluster) while a thread of the block runs
    unsigned char* dyn_smem = nullptr;
    size_t dyn_bytes = 0;
    void (*entry)(void**) = nullptr;
    void** args = nullptr;
    std::string fault;                  // first misuse seen in this block
    std::map<uint32_t, Mbar> mbars;     // by shared-memory address
    std::vector<BulkCopy> bulk;         // bulk tensor copies issued during the current scheduler pass
    std::vector<WarpGroup> wgs;
    long regs_free = 0;                 // registers given back by setmaxnreg.dec, not yet taken by an .inc
    std::string stall;                  // what a setmaxnreg.inc waits for, for the deadlock message
    Rendezvous named[16];               // named barriers (bar.sync id, n), of nb_count[id] threads
    int nb_count[16] = {};
};

// Registers a thread of a block of n threads starts with when its kernel reallocates them (setmaxnreg): ptxas
// gives such a kernel the most that one block per multiprocessor allows (65 536 in all, 8 a thread at a time).
inline int regs_at_launch(int n) { return std::min(255, 65536 / ((n + 31) / 32 * 32)) & ~7; }

// The blocks of one thread block cluster (one block when the kernel has no __cluster_dims__), run together, and
// the cluster-wide barrier (barrier.cluster.arrive / wait).
struct Cluster {
    std::vector<Block> blocks;
    Rendezvous bar;
    int live() const {
        int n = 0;
        for (const Block& b : blocks) n += b.live;
        return n;
    }
};

inline thread_local Thread* cur_thread = nullptr;
inline thread_local Block* cur_block = nullptr;
inline thread_local dim3 block_idx;
inline thread_local dim3 block_dim;
inline thread_local dim3 grid_dim;

inline void yield() { fiber_switch(cur_thread->fiber, cur_block->sched); }
inline int lane_id() { return cur_thread->linear & 31; }
inline Warp& cur_warp() { return cur_block->warps[cur_thread->linear >> 5]; }
inline unsigned char* dyn_smem() { return cur_block->dyn_smem; }

// The Hopper model (mbarriers, bulk copies, wgmma, named barriers) is in emu_sm90.h.
inline void end_pass_sm90(Block& b);
inline void check_cp_async_write(const unsigned char* dst);

// One arrival at r, of `live` participants, then wait for it to complete: the last to arrive runs on.
inline void rendezvous(Rendezvous& r, int live) {
    unsigned g = r.gen;
    cur_block->events++;
    if (r.arrive(live)) return;
    while (r.gen == g) yield();
}

// Block-wide barrier (__syncthreads).
inline void block_barrier() { rendezvous(cur_block->bar, cur_block->live); }

// Warp-wide barrier: every live lane of the calling thread's warp.
inline void warp_barrier() {
    Warp& w = cur_warp();
    rendezvous(w.bar, w.live);
}

inline bool lane_live(int lane) {
    int t = (cur_thread->linear & ~31) + lane;
    return lane < cur_warp().lanes && !cur_block->threads[t].done;
}

// One value per lane in, the value of lane `src` out (own value where src is out of range or exited).
template <class T>
inline T exchange(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    Warp& w = cur_warp();
    int lane = lane_id();
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    w.slot[lane] = bits;
    warp_barrier();
    uint64_t got = (src >= 0 && src < 32 && lane_live(src)) ? w.slot[src] : bits;
    warp_barrier();
    T r;
    std::memcpy(&r, &got, sizeof(T));
    return r;
}

// Bit i of the result = predicate of lane i, over live lanes.
inline unsigned vote(int pred) {
    Warp& w = cur_warp();
    w.slot[lane_id()] = pred ? 1 : 0;
    warp_barrier();
    unsigned bits = 0;
    for (int l = 0; l < 32; ++l)
        if (lane_live(l) && w.slot[l]) bits |= 1u << l;
    warp_barrier();
    return bits;
}

inline unsigned live_mask() {
    unsigned m = 0;
    for (int l = 0; l < 32; ++l)
        if (lane_live(l)) m |= 1u << l;
    return m;
}

// --- cp.async: held back until the wait that covers its group ----------------------------------------------
inline void cp_async(void* dst, const void* src, int src_bytes) {
    PendingCopy c;
    c.dst = static_cast<unsigned char*>(dst);
    std::memset(c.bytes, 0, 16);
    if (src_bytes > 0) std::memcpy(c.bytes, src, src_bytes > 16 ? 16 : src_bytes);
    c.group = cur_thread->open_group;
    cur_thread->pending.push_back(c);
}
inline void cp_async_commit() { cur_thread->open_group++; }
inline void cp_async_wait(int n) {
    Thread* t = cur_thread;
    long newest_done = t->open_group - 1 - n;  // committed groups older than the n newest must land
    std::vector<PendingCopy> keep;
    for (const PendingCopy& c : t->pending) {
        if (c.group <= newest_done) {
            check_cp_async_write(c.dst);
            std::memcpy(c.dst, c.bytes, 16);
        }
        else
            keep.push_back(c);
    }
    t->pending.swap(keep);
}

// --- misuse: the first message of a block fails its launch ----------------------------------------------------
__attribute__((format(printf, 1, 2))) inline void fault(const char* fmt, ...) {
    Block* b = cur_block;
    if (!b->fault.empty()) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->fault = msg;
}


// --- bf16 / f16 bit conversions (round to nearest even; NaN stays NaN) --------------------------------------
inline float bits_to_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint32_t f32_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline uint16_t f32_to_bf16_bits(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}
inline float bf16_bits_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

inline uint16_t f32_to_f16_bits(float f) {
    uint32_t x = f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u);
    if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: infinity
    if (ax < 0x38800000u) {                                  // subnormal half (or zero)
        float a = bits_to_f32(ax) * 16777216.0f;             // scale by 2^24: units of the smallest subnormal
        return uint16_t(sign | uint32_t(std::nearbyint(a)));
    }
    uint32_t mant = ax & 0x7fffffu;
    uint32_t exp = (ax >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return uint16_t(sign | h);
}
inline float f16_bits_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = float(mant) / 16777216.0f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (mant << 13));
    return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

}  // namespace cpeal_emu

// ---------------------------------------------------------------------------------------------------------
// Built-in variables and intrinsics
// ---------------------------------------------------------------------------------------------------------
#define threadIdx (cpeal_emu::cur_thread->idx)
#define blockIdx (cpeal_emu::block_idx)
#define blockDim (cpeal_emu::block_dim)
#define gridDim (cpeal_emu::grid_dim)

inline void __syncthreads() { cpeal_emu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { cpeal_emu::warp_barrier(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    int lane = cpeal_emu::lane_id();
    return cpeal_emu::exchange(v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    int lane = cpeal_emu::lane_id();
    int src = lane ^ mask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return cpeal_emu::exchange(v, src);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = cpeal_emu::lane_id();
    int src = (lane & (width - 1)) + int(delta) < width ? lane + int(delta) : lane;
    return cpeal_emu::exchange(v, src);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = cpeal_emu::lane_id();
    int src = (lane & (width - 1)) >= int(delta) ? lane - int(delta) : lane;
    return cpeal_emu::exchange(v, src);
}
inline unsigned __ballot_sync(unsigned, int pred) { return cpeal_emu::vote(pred); }
inline int __any_sync(unsigned, int pred) { return cpeal_emu::vote(pred) != 0; }
inline int __all_sync(unsigned, int pred) { return cpeal_emu::vote(pred) == cpeal_emu::live_mask(); }
inline unsigned __activemask() { return cpeal_emu::live_mask(); }

// Atomics: blocks of one launch run on one OS thread, but use real atomics so that stays an implementation detail.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline float atomicAdd(float* p, float v) {
    float old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    float next;
    do {
        next = old + v;
    } while (!__atomic_compare_exchange(p, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
// *p = max(*p, v) (or, with Min, the minimum); returns the old value.
template <class I, bool Min = false>
inline I atomic_max_integral(I* p, I v) {
    I old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while ((Min ? v < old : old < v) &&
           !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicMax(int* p, int v) { return atomic_max_integral(p, v); }
inline int atomicMin(int* p, int v) { return atomic_max_integral<int, true>(p, v); }
inline unsigned atomicMax(unsigned* p, unsigned v) { return atomic_max_integral(p, v); }
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) { return atomic_max_integral(p, v); }
inline int atomicCAS(int* p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}

// Math
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __int_as_float(int i) { return cpeal_emu::bits_to_f32(uint32_t(i)); }
inline int __float_as_int(float f) { return int(cpeal_emu::f32_to_bits(f)); }
inline float __uint_as_float(unsigned u) { return cpeal_emu::bits_to_f32(u); }
inline unsigned __float_as_uint(float f) { return cpeal_emu::f32_to_bits(f); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T>
inline T __ldg(const T* p) { return *p; }
using std::max;
using std::min;
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }

// bf16 / f16 types with the intrinsics of cuda_bf16.h / cuda_fp16.h that cpeal uses.
struct __nv_bfloat16 {
    uint16_t __x;
};
struct __half {
    uint16_t __x;
};
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16{cpeal_emu::f32_to_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return cpeal_emu::bf16_bits_to_f32(h.__x); }
inline __half __float2half(float f) { return __half{cpeal_emu::f32_to_f16_bits(f)}; }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline float __half2float(__half h) { return cpeal_emu::f16_bits_to_f32(h.__x); }

#include "emu_sm90.h"
#include "emu_banks.h"
#include "emu_launch.h"
