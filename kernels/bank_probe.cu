// kernels/bank_probe.cu — shared-memory accesses whose bank behaviour is known, to prove the emulator's bank
// model (kernels/emu_banks.h, tests/gpu_banks.rs). One warp, sites in this order (wavefronts a warp instruction,
// the fewest possible): 4-byte consecutive (1, 1), 4-byte stride 32 words (32, 1), one word for all (1, 1),
// 16-byte at stride 32 bytes (8, 4), 16-byte consecutive (4, 4), 8-byte at stride 16 bytes (4, 2), a store at
// stride 33 words (1, 1), an ldmatrix of 8 rows 64 bytes apart per matrix (16, 4).
// Launch: grid 1, block 32, shared 8 KiB.
#include "common.cuh"

struct __align__(16) BankV4 {
    float x, y, z, w;
};
struct __align__(8) BankV2 {
    float x, y;
};

extern "C" __global__ void probe_banks_f32(float* out) {
    float* s = DYN_SMEM(float);
    int l = threadIdx.x;
    for (int i = l; i < 2048; i += 32) s[i] = float(i % 97);
    __syncthreads();
    float acc = lds(s + l);
    acc += lds(s + 32 * l);
    acc += lds(s + 0);
    acc += lds(reinterpret_cast<const BankV4*>(s) + 2 * l).y;
    acc += lds(reinterpret_cast<const BankV4*>(s) + l).z;
    acc += lds(reinterpret_cast<const BankV2*>(s) + 2 * l).x;
    __syncthreads();
    sts(s + 33 * l, acc);
    __syncthreads();
    u32 r[4];
    ldmatrix_x4(r, s + 16 * l);
    out[l] = acc + float(r[0] & 1023u) + float(r[3] & 1023u);
}
