// kernels/attention_sm90.cu — the attention of attention.cu (same arguments and function) on Hopper's warpgroup
// tensor-core instructions, head dim 64 (sm_90a; CPEAL_ATTENTION=wgmma, opt-in until measured on a GPU).
//
// Block: 256 threads = 2 warpgroups own 128 queries of one (b, h); warpgroup g owns queries 64g … 64g+63 (one
// whose queries all lie past Tq only helps load). Q, then K and V 64 keys at a time, go global → shared by
// cp.async into the 128-byte-swizzled layout (a 128-byte row of 64 head-dim values per query or key), K and V
// through an ATW_STAGES-deep ring, so for ViT's 197 tokens every key is requested before the first is used.
// Per key block of a warpgroup:
//   s = q·kᵀ      wgmma m64n64k16 × 4 (k over the head dim), both operands K-major in shared memory;
//   online softmax of the thread's two rows in registers (scale folded into exp2's FMA, ex2.approx.ftz);
//   o += p·v     wgmma m64n64k16 × 4 (k over the keys) with p from registers (the score accumulators of two
//                 8-key groups are the A fragment of one 16-key step, as with mma.sync) and v MN-major: the same
//                 shared tile as K's layout, read transposed by the instruction.
// Whole 64-key blocks inside Tk (not causal) skip the mask; the last, partial block goes 16 keys at a time
// (wgmma m64n16k16 for the scores, one k-step for p·v), so 197 keys cost 208, not 256. The two warpgroups, and
// the two blocks an SM holds, interleave one's softmax with the other's tensor-core work.
//
// Launch: grid (ceil(Tq/128), H, B), block 256, shared 1024 + (2 + 2·ATW_STAGES)·8192 bytes
// (src/gpu/ops/attention.rs). Needs every ld a multiple of 8 and 16-byte aligned pointers (as attention.cu's
// tensor-core kernels; the launcher checks).
#include "common.cuh"
#include "hopper.cuh"
#include "attention.cuh"

#define ATW_STAGES 4
#define ATW_TILE (64 * 128)  // 64 rows of 64 16-bit values, swizzled: 8 KiB

// One block of NKEY keys (64, or 16 from what is left after the whole 64-key blocks) at rows key0 … of the K / V
// tiles, keys k0 … of the sequence, for this warpgroup's 64 queries from qrow0 (shared tile Qs): the scores, the
// online-softmax update of the thread's two rows (row0 + g, + 8), o += p·v. MASK: keys past Tk, and with
// `causal` past the diagonal, get −inf. The scale is positive (launcher), so the raw scores' maximum is the
// scaled one's.
template <int NKEY, bool MASK, class T>
DEVI void atw_keys(const char* Qs, const char* Kt, const char* Vt, int key0, int k0, int row0, int Tq, int Tk,
                   int causal, float sl2, float (&o)[8][4], float (&mrow)[2], float (&lrow)[2]) {
    constexpr int NS = NKEY / 2;  // score accumulators per thread
    int lane = threadIdx.x & 31, t = lane & 3;
    float s[NS];
    UNROLL for (int i = 0; i < NS; ++i) s[i] = 0.0f;
    unsigned long long dq = wgmma_desc_sw128(Qs), dk = wgmma_desc_sw128(Kt + key0 * 128);
    wgmma_fence();
    UNROLL for (int ks = 0; ks < 4; ++ks) wgmma_k16<T>(s, dq + 2 * ks, dk + 2 * ks);  // +32 bytes per k16 step
    wgmma_commit();
    wgmma_wait<0>();
    UNROLL for (int i = 0; i < NS; ++i) wgmma_pin(s[i]);

    // A warp whose 16 queries all lie past Tq skips the softmax: its part of p is 0, its rows are never stored.
    if (row0 - (lane >> 2) < Tq) {
        // Register 4q + 2h + e holds row row0 + 8h, key k0 + 8q + 2t + e.
        float mx[2] = {NEG_INF, NEG_INF};
        UNROLL for (int i = 0; i < NS; ++i) {
            int h = (i >> 1) & 1;
            if (MASK) {
                int key = k0 + 8 * (i >> 2) + 2 * t + (i & 1), row = row0 + 8 * h;
                bool ok = key < Tk && (!causal || key <= row + Tk - Tq);
                s[i] = ok ? s[i] : NEG_INF;
            }
            mx[h] = fmaxf(mx[h], s[i]);
        }
        float alpha[2], base[2];
        att_softmax_rescale<true>(mx, mrow, lrow, sl2, alpha, base);
        UNROLL for (int i = 0; i < 8; ++i) UNROLL for (int e = 0; e < 4; ++e) o[i][e] *= alpha[e >> 1];
        UNROLL for (int i = 0; i < NS; ++i) {
            s[i] = exp2_ftz(fmaf(s[i], sl2, -base[(i >> 1) & 1]));  // −inf (masked) gives 0
            lrow[(i >> 1) & 1] += s[i];
        }
    } else {
        UNROLL for (int i = 0; i < NS; ++i) s[i] = 0.0f;
    }
    // The accumulators of keys 16j … 16j+15 (registers 8j … 8j+7) are the A fragment of k-step j.
    u32 a[NKEY / 16][4];
    UNROLL for (int j = 0; j < NKEY / 16; ++j) UNROLL for (int r = 0; r < 4; ++r)
        a[j][r] = pack2<T>(s[8 * j + 2 * r], s[8 * j + 2 * r + 1]);
    // v's rows key0 + 16j …: MN-major k-step j starts 16 rows (2048 bytes) further.
    unsigned long long dv = wgmma_desc_sw128(Vt + key0 * 128);
    wgmma_fence();
    float(&acc)[32] = reinterpret_cast<float(&)[32]>(o);  // the same registers, as the instruction lists them
    UNROLL for (int j = 0; j < NKEY / 16; ++j) wgmma_m64n64k16_rs_mn<T>(acc, a[j], dv + (unsigned long long)(j * 2048 / 16));
    wgmma_commit();
    wgmma_wait<0>();
    UNROLL for (int i = 0; i < 32; ++i) wgmma_pin(acc[i]);
}

template <class T>
DEVI void attention_wgmma_body(int B, int H, int Tq, int Tk, int ld_q, int ld_k, int ld_v, int ld_o, const T* q,
                               const T* k, const T* v, T* o, float scale, int causal) {
    constexpr int D = 64;
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    char* Qs = smem;                            // [2][ATW_TILE]
    char* Ks = Qs + 2 * ATW_TILE;               // [ATW_STAGES][ATW_TILE]
    char* Vs = Ks + ATW_STAGES * ATW_TILE;      // [ATW_STAGES][ATW_TILE]
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * 128;
    int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, g = (threadIdx.x & 31) >> 2;
    const T* qb = q + (long)b * Tq * ld_q + h * D;
    const T* kb = k + (long)b * Tk * ld_k + h * D;
    const T* vb = v + (long)b * Tk * ld_v + h * D;
    float sl2 = scale * 1.4426950408889634f;  // exp(x) = exp2(x·log2 e)
    int wq0 = q0 + 64 * wg, row0 = wq0 + 16 * warp + g;
    bool active = wq0 < Tq;

    int kv_end = Tk;
    if (causal) kv_end = min(Tk, q0 + 128 + Tk - Tq);  // keys past the last query's diagonal are masked
    int ntiles = kv_end > 0 ? ceil_div(kv_end, 64) : 0;
    load_tile_sw128<T, 128>(Qs, qb, ld_q, Tq, D, q0, 0);
    for (int s = 0; s < ATW_STAGES - 1; ++s) {  // group s: tile s (and Q with tile 0)
        if (s < ntiles) {
            load_tile_sw128<T, 64>(Ks + s * ATW_TILE, kb, ld_k, Tk, D, 64 * s, 0);
            load_tile_sw128<T, 64>(Vs + s * ATW_TILE, vb, ld_v, Tk, D, 64 * s, 0);
        }
        cp_async_commit();
    }

    float oacc[8][4];
    UNROLL for (int i = 0; i < 8; ++i) UNROLL for (int e = 0; e < 4; ++e) oacc[i][e] = 0.0f;
    float mrow[2] = {NEG_INF, NEG_INF}, lrow[2] = {0.0f, 0.0f};
    for (int kt = 0; kt < ntiles; ++kt) {
        cp_async_wait<ATW_STAGES - 2>();  // tile kt has landed (this thread's chunks) ...
        fence_proxy_async();              // ... and is visible to the async proxy ...
        __syncthreads();                  // ... for every thread; tile kt-1's stage is no longer read
        int pre = kt + ATW_STAGES - 1;
        if (pre < ntiles) {
            load_tile_sw128<T, 64>(Ks + (pre % ATW_STAGES) * ATW_TILE, kb, ld_k, Tk, D, 64 * pre, 0);
            load_tile_sw128<T, 64>(Vs + (pre % ATW_STAGES) * ATW_TILE, vb, ld_v, Tk, D, 64 * pre, 0);
        }
        cp_async_commit();
        if (!active) continue;
        const char* Kt = Ks + (kt % ATW_STAGES) * ATW_TILE;
        const char* Vt = Vs + (kt % ATW_STAGES) * ATW_TILE;
        const char* Qw = Qs + wg * ATW_TILE;
        int k0 = 64 * kt, nkeys = min(64, kv_end - k0);
        if (nkeys == 64 && !causal)
            atw_keys<64, false, T>(Qw, Kt, Vt, 0, k0, row0, Tq, Tk, causal, sl2, oacc, mrow, lrow);
        else if (nkeys == 64)
            atw_keys<64, true, T>(Qw, Kt, Vt, 0, k0, row0, Tq, Tk, causal, sl2, oacc, mrow, lrow);
        else
            for (int j = 0; j < nkeys; j += 16)
                atw_keys<16, true, T>(Qw, Kt, Vt, j, k0 + j, row0, Tq, Tk, causal, sl2, oacc, mrow, lrow);
    }
    cp_async_wait<0>();
    if (active) att_store_rows<8>(o + (long)b * Tq * ld_o + h * D, ld_o, row0, Tq, oacc, lrow);
}

// (B, H, Tq, Tk, ld_q, ld_k, ld_v, ld_o, q, k, v, o, scale, causal), as attention.cu's kernels.
#define ATW_SIZES int B, int H, int Tq, int Tk, int ld_q, int ld_k, int ld_v, int ld_o
#define ATW_PASS B, H, Tq, Tk, ld_q, ld_k, ld_v, ld_o, q, k, v, o, scale, causal
extern "C" __global__ void __launch_bounds__(256, 2) attention_fwd_wgmma_d64_bf16(ATW_SIZES, const bf16_t* q,
        const bf16_t* k, const bf16_t* v, bf16_t* o, float scale, int causal) {
    attention_wgmma_body(ATW_PASS);
}
extern "C" __global__ void __launch_bounds__(256, 2) attention_fwd_wgmma_d64_f16(ATW_SIZES, const f16_t* q,
        const f16_t* k, const f16_t* v, f16_t* o, float scale, int causal) {
    attention_wgmma_body(ATW_PASS);
}
