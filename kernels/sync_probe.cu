// kernels/sync_probe.cu — small kernels that prove the emulator models synchronisation (and that the same
// semantics hold on a GPU): barriers, warp shuffles and votes, dynamic shared memory, atomics, cp.async.
// `probe_reverse_nosync_f32` omits a required barrier on purpose: under emu its result must be wrong, and
// `probe_block_order_f32` relies on blocks running in index order, which no GPU promises.
#include "common.cuh"

// y[i] = x[n-1-i] through shared memory, one block of n <= 1024 threads.
extern "C" __global__ void probe_reverse_f32(int n, const float* x, float* y) {
    __shared__ float tile[1024];
    int i = threadIdx.x;
    if (i < n) tile[i] = x[i];
    __syncthreads();
    if (i < n) y[i] = tile[n - 1 - i];
}

// The same with the barrier missing: a race on real hardware, deterministically wrong under emu.
extern "C" __global__ void probe_reverse_nosync_f32(int n, const float* x, float* y) {
    __shared__ float tile[1024];
    int i = threadIdx.x;
    if (i < n) tile[i] = x[i];
    if (i < n) y[i] = tile[n - 1 - i];
}

// Per lane (blocks of 32·k threads, n = blockDim.x·gridDim.x values), out has 6 values per lane:
// [xor-sum of the warp, down-shuffle by 1, up-shuffle by 3, broadcast of lane 5, ballot(x>0) as float,
//  any(x>2)+2·all(x>-2)].
extern "C" __global__ void probe_warp_f32(int n, const float* x, float* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    float s = warp_sum(v);
    float d = __shfl_down_sync(0xffffffffu, v, 1);
    float u = __shfl_up_sync(0xffffffffu, v, 3);
    float b = __shfl_sync(0xffffffffu, v, 5);
    unsigned bal = __ballot_sync(0xffffffffu, v > 0.0f);
    int any = __any_sync(0xffffffffu, v > 2.0f);
    int all = __all_sync(0xffffffffu, v > -2.0f);
    if (i < n) {
        float* o = out + 6 * i;
        o[0] = s;
        o[1] = d;
        o[2] = u;
        o[3] = b;
        o[4] = (float)bal;
        o[5] = (float)(any + 2 * all);
    }
}

// Block sums staged through dynamic shared memory (blockDim.x floats); total[0] += every block's sum
// (atomicAdd), imax[0] = max over i of (int)(x[i]·1000) (atomicMax).
extern "C" __global__ void probe_reduce_f32(int n, const float* x, float* total, int* imax) {
    float* buf = DYN_SMEM(float);
    __shared__ float scratch[32];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    float v = buf[(threadIdx.x + 1) % blockDim.x];  // a neighbour's value: needs the barrier above
    float s = block_sum(v, scratch);
    if (threadIdx.x == 0) atomicAdd(total, s);
    if (i < n) atomicMax(imax, (int)(x[i] * 1000.0f));
}

// y = x (n a multiple of 4) via cp.async into shared memory, two commit groups in flight; blocks of 256
// threads, 2048 values per block; chunks past n are zero-filled and not stored.
extern "C" __global__ void probe_cp_async_f32(int n, const float* x, float* y) {
    __shared__ __align__(16) float stage[2][256 * 4];
    int t = threadIdx.x;  // blockDim.x == 256
    int base0 = blockIdx.x * 2048, base1 = base0 + 1024;
    cp_async_16(&stage[0][t * 4], x + base0 + t * 4, base0 + t * 4 + 4 <= n);
    cp_async_commit();
    cp_async_16(&stage[1][t * 4], x + base1 + t * 4, base1 + t * 4 + 4 <= n);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    for (int k = 0; k < 4; ++k) {
        int j = base0 + ((t + 1) % 256) * 4 + k;  // a neighbour's chunk
        if (j < n) y[j] = stage[0][((t + 1) % 256) * 4 + k];
    }
    cp_async_wait<0>();
    __syncthreads();
    for (int k = 0; k < 4; ++k) {
        int j = base1 + ((t + 1) % 256) * 4 + k;
        if (j < n) y[j] = stage[1][((t + 1) % 256) * 4 + k];
    }
}

// The same copy with the cp.async waits missing: a race on real hardware; under emu the copies never land
// before the reads, so the result is wrong. Blocks of 256 threads, 1024 values per block.
extern "C" __global__ void probe_cp_async_nowait_f32(int n, const float* x, float* y) {
    __shared__ __align__(16) float stage[256 * 4];
    int t = threadIdx.x, base = blockIdx.x * 1024;
    cp_async_16(&stage[t * 4], x + base + t * 4, base + t * 4 + 4 <= n);
    cp_async_commit();
    __syncthreads();
    for (int k = 0; k < 4; ++k) {
        int j = base + t * 4 + k;
        if (j < n) y[j] = stage[t * 4 + k];
    }
    cp_async_wait<0>();
}

// Built for four blocks per SM (`__launch_bounds__(64, 4)`): under the emulator a launch whose dynamic shared
// memory lets fewer fit fails (src/gpu/occupancy.rs). Copies x to y through dynamic shared memory.
extern "C" __global__ void __launch_bounds__(64, 4) probe_occupancy_f32(int n, const float* x, float* y) {
    float* stage = DYN_SMEM(float);
    int i = blockIdx.x * 64 + threadIdx.x;
    stage[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    if (i < n) y[i] = stage[threadIdx.x];
}

// Block b writes flags[b] = b + 1, then copies what block b − 1 wrote: correct only if blocks ran in index
// order, which a GPU does not promise (the emulator runs them last first, so seen[b] is never b there).
extern "C" __global__ void probe_block_order_f32(int* flags, int* seen) {
    int b = blockIdx.x;
    if (threadIdx.x != 0) return;
    flags[b] = b + 1;
    __threadfence();
    seen[b] = b > 0 ? *(volatile int*)(flags + b - 1) : 0;
}
