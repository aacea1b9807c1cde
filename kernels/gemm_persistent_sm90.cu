// kernels/gemm_persistent_sm90.cu — the persistent Hopper GEMMs (sm_90a): the function of gemm.cu and
// gemm_sm90.cu, with one block per SM walking all output tiles. Helpers in gemm_sm90.cuh.
#include "common.cuh"
#include "hopper.cuh"
#include "gemm_sm90.cuh"

// ---------------------------------------------------------------------------------------------------------
// Persistent variants: one block per SM walks the output tiles, N fastest (a block row of A is then read from
// memory once while W stays in L2). 384 threads: warpgroup 0 is the producer (one thread issues TMA loads for
// every tile of the block, in order, into a STAGES-deep ring; the warpgroup gives up registers), warpgroups 1
// and 2 are consumers with a 128 x 128 f32 accumulator tile each (two m64n128k16 per k16 step, 128 registers).
//   PP_PINGPONG (`pp`): block tiles are 128 x 128 and the consumers take alternate ones, so one consumer's
//     epilogue runs while the other's wgmma keep the tensor cores busy. PP_ORDERED (`ppo`): the same, with
//     the main loops taking turns (named barriers 4 and 5: consumer c waits on 4 + c until the other has
//     finished the main loop of the tile before).
//   PP_COOPERATIVE (`coop`): block tiles are 256 x 128 and both consumers work on each (rows [128c, 128c+128)),
//     sharing the W tile of every stage: a quarter less L2 traffic per flop, but no epilogue overlap. With
//     BN = 256 (`coop-n256s4`), block tiles are 128 x 256, each consumer 64 rows by all 256 columns in one
//     wgmma m64n256k16 per k16 step: the same traffic, a sixth fewer shared-memory operand bytes per flop.
//   MC (`coopmc`, `ppomc`): the kernel in clusters of 2 blocks (__cluster_dims__(2, 1, 1)) that take the two
//     128-column halves of a BM x 256 tile: they share its A rows, each loading half of them by TMA multicast
//     into both, so L2 sends 2/3 (coop) or 3/4 (ppo) of the bytes per flop. MW (`coopmw-n256s4`): clusters of 2
//     blocks on the two 128-row halves of a 256 x 256 tile, sharing its W rows the same way (2/3 of the bytes,
//     and no wasted tile when N / 256 is odd). A stage is refilled only once the consumers of both blocks have
//     released it (each arrives at its block's empty barrier and the other's).
// The ring is shared in fill order: the block's i-th tile uses fills [i·KT, (i+1)·KT) (KT = k tiles), stage
// fill % STAGES, phase parity (fill / STAGES) & 1. Each consumer parks its accumulators in its own shared f32
// buffer, CW columns at a time, for a coalesced epilogue.
// Launch: grid min(#tiles, #SMs), block 384, shared bytes as Sm90Variant::shared_bytes.
// ---------------------------------------------------------------------------------------------------------
#define PP_PINGPONG 0
#define PP_ORDERED 1
#define PP_COOPERATIVE 2


// Columns [CW·C, CW·C + CW) of one consumer's 64·NH x 2·NACC tile (acc[h2] holds rows [64·h2, 64·h2 + 64) in the
// m64nN layout) into its park buffer (row stride CW + 8 floats, halves swizzled as g90_park's): compile-time
// register indices, so the accumulators stay in registers.
template <int CW, int C, int NH, int NACC>
DEVI void g90_pp_park(float (&acc)[NH][NACC], float* park, int ct) {
    int warp = ct >> 5, g = (ct & 31) >> 2, t = ct & 3, off[2];
    g90_park_offsets<CW>(g, t, off);
    UNROLL for (int h2 = 0; h2 < NH; ++h2) UNROLL for (int q = 0; q < CW / 8; ++q) UNROLL for (int h = 0; h < 2; ++h) {
        int reg = 4 * (CW / 8 * C + q) + 2 * h;
        float* p = park + (64 * h2 + 16 * warp + g + 8 * h) * (CW + 8) + 8 * q + off[g90_chunk_swap<CW>(q)];
        sts(reinterpret_cast<F2*>(p), F2{acc[h2][reg], acc[h2][reg + 1]});
    }
}
// Chunk c (a run-time value) through the compile-time parks.
template <int CW, int NH, int NACC, int C = 0>
DEVI void g90_pp_park_chunk(int c, float (&acc)[NH][NACC], float* park, int ct) {
    if constexpr (C < 2 * NACC / CW) {
        if (c == C) g90_pp_park<CW, C>(acc, park, ct);
        else g90_pp_park_chunk<CW, NH, NACC, C + 1>(c, acc, park, ct);
    }
}

// Epilogue of one consumer's tile, CW columns at a time. The chunk loop stays rolled so that the store walk
// (bias, activation, residual) exists once in the binary: unrolled, its copies tripled the kernel's code.
template <class T, int CW, int NH, int NACC>
DEVI void g90_pp_epilogue(float (&acc)[NH][NACC], float* park, int ct, int bar, int m0, int n0, int M, int N,
                          int ldc, const GemmEpi<T>& ep, T* C) {
#pragma unroll 1
    for (int c = 0; c < 2 * NACC / CW; ++c) {
        named_barrier_sync(bar, 128);  // this warpgroup's walk of the previous chunk has read the buffer
        g90_pp_park_chunk<CW>(c, acc, park, ct);
        named_barrier_sync(bar, 128);
        g90_store<T, CW + 8, CW, 128, 64 * NH>(park, ct, m0, n0 + CW * c, M, N, ldc, ep, C);
    }
}


// MC: 0, or the operand a cluster of two blocks shares (G90_SHARE_A, G90_SHARE_W).
template <class T, int STAGES, int MODE, int MC = 0, int BN = 128>
DEVI void g90_pp_body(int M, int N, int K, int ldc, const TmaMap* amap, const TmaMap* wmap, const GemmEpi<T>& ep,
                      T* C) {
    constexpr bool COOP = MODE == PP_COOPERATIVE, ORDERED = MODE == PP_ORDERED, WIDE = BN == 256;
    constexpr bool SHARE_A = MC == G90_SHARE_A, SHARE_W = MC == G90_SHARE_W;
    static_assert(BN == 128 || (WIDE && COOP && !SHARE_A), "n256: the cooperative kernel, alone or sharing W");
    static_assert(!SHARE_W || WIDE, "sharing W: the cooperative kernel on 256 columns");
    // Block tile rows, a consumer's rows (64·NH, in NH m64 accumulators of NACC registers), park columns per chunk.
    constexpr int BM = COOP && !WIDE ? 256 : 128, CM = COOP ? BM / 2 : 128, NH = CM / 64, NACC = BN / 2;
    constexpr int CW = COOP && !WIDE ? 16 : 32;
    constexpr int A_BYTES = BM * 128, STAGE_BYTES = A_BYTES + BN * 128, PARK_BYTES = CM * (CW + 8) * 4;
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    float* park0 = reinterpret_cast<float*>(smem + STAGES * STAGE_BYTES);
    u32 full0 = smem_addr(smem + STAGES * STAGE_BYTES + 2 * PARK_BYTES), empty0 = full0 + 8 * STAGES;
    // Work units: block tiles, N fastest; in clusters, pairs of them (block `rank` of its cluster takes column tile
    // 2·j + rank of unit column j when sharing A, row tile 2·i + rank of unit row i when sharing W; the clusters
    // walk the units as the blocks do otherwise).
    u32 rank = MC ? cluster_ctarank() : 0;
    int ntn = ceil_div(N, BN), nun = SHARE_A ? ceil_div(ntn, 2) : ntn, ktiles = ceil_div(K, G90_BK);
    int ntm = ceil_div(M, BM), ntiles = (SHARE_W ? ceil_div(ntm, 2) : ntm) * nun;
    int unit0 = MC ? blockIdx.x / 2 : blockIdx.x, units = MC ? gridDim.x / 2 : gridDim.x;
    int r = int(rank);
    auto tile_m0 = [&](int tile) { return ((tile / nun) * (SHARE_W ? 2 : 1) + (SHARE_W ? r : 0)) * BM; };
    auto tile_n0 = [&](int tile) { return ((tile % nun) * (SHARE_A ? 2 : 1) + (SHARE_A ? r : 0)) * BN; };
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full0 + 8 * s, 1);                          // the producer's expect_tx, then the tile's bytes
            mbar_init(empty0 + 8 * s, (COOP ? 2 : 1) * (MC ? 2 : 1));  // the consumers that read the stage
        }
        fence_mbarrier_init();
    }
    __syncthreads();
    if (MC) cluster_sync();  // the other block's barriers are initialised before anything reaches them
    int wg = threadIdx.x >> 7;
    if (wg == 0) {
        setmaxnreg_dec<40>();
        if (threadIdx.x == 0) {
            int fill = 0;
            for (int tile = unit0; tile < ntiles; tile += units)
                g90_produce_tile<STAGES, A_BYTES, STAGE_BYTES, BM / 128, MC>(
                    fill, ktiles, smem, full0, empty0, amap, wmap, tile_m0(tile), tile_n0(tile), rank);
        }
        return;  // no barrier of the whole block follows
    }
    setmaxnreg_inc<232>();
    int cw = wg - 1, ct = threadIdx.x & 127;
    float* park = park0 + cw * CM * (CW + 8);
    float acc[NH][NACC];
    int mine = ceil_div(ntiles - unit0, units);         // tiles of this block
    int first = COOP ? 0 : cw, step = COOP ? 1 : 2;       // this consumer's tiles of them
    // A stage read: released to this block's producer, and with MC to the other block's, which fills it too.
    auto release = [&](int fill) {
        if (ct != 0) return;
        mbar_arrive(empty0 + 8 * (fill % STAGES));
        if (MC) mbar_arrive_cluster(empty0 + 8 * (fill % STAGES), rank ^ 1);
    };
    for (int i = first, tile = unit0 + first * units; tile < ntiles; i += step, tile += step * units) {
        UNROLL for (int h2 = 0; h2 < NH; ++h2) UNROLL for (int e = 0; e < NACC; ++e) acc[h2][e] = 0.0f;
        if (ORDERED && i > 0) named_barrier_sync(4 + cw, 256);  // the other consumer's main loop of tile i-1 is done
        int fill0 = i * ktiles;
        for (int kt = 0; kt < ktiles; ++kt) {
            int fill = fill0 + kt, s = fill % STAGES;
            mbar_wait(full0 + 8 * s, (fill / STAGES) & 1);
            const char* st = smem + s * STAGE_BYTES;
            unsigned long long da = wgmma_desc_sw128(st + (COOP ? cw * CM * 128 : 0));
            unsigned long long db = wgmma_desc_sw128(st + A_BYTES);
            wgmma_fence();
            UNROLL for (int kk = 0; kk < G90_BK / 16; ++kk) UNROLL for (int h2 = 0; h2 < NH; ++h2)
                wgmma_k16<T>(acc[h2], da + (unsigned long long)(h2 * 64 * 128 / 16) + 2 * kk, db + 2 * kk);
            wgmma_commit();
            wgmma_wait<1>();  // the previous k tile's group has retired: its stage may be refilled
            if (kt > 0) release(fill - 1);
        }
        wgmma_wait<0>();
        release(fill0 + ktiles - 1);
        if (ORDERED && i + 1 < mine) named_barrier_arrive(5 - cw, 256);  // tile i+1's consumer may start
        UNROLL for (int h2 = 0; h2 < NH; ++h2) UNROLL for (int e = 0; e < NACC; ++e) wgmma_pin(acc[h2][e]);
        int m0 = tile_m0(tile) + (COOP ? CM * cw : 0), n0 = tile_n0(tile);
        if (m0 < M && n0 < N) g90_pp_epilogue<T, CW>(acc, park, ct, 2 + cw, m0, n0, M, N, ldc, ep, C);  // MC: odd pairs
    }
    if (MC) cluster_sync();  // the other block has made its last arrival here
}

// Persistent ping-pong variant (384 threads, one block per SM, grid min(#tiles, #SMs)): pp_n128s5, 201 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_pp_n128s5_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_pp_body<bf16_t, 5, PP_PINGPONG>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_pp_n128s5_f16(G90_TMA_PARAMS(f16_t)) {
    g90_pp_body<f16_t, 5, PP_PINGPONG>(G90_TMA_ARGS(f16_t));
}
// The same with the consumers' main loops in turn (PP_ORDERED): ppo_n128s5.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_ppo_n128s5_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_pp_body<bf16_t, 5, PP_ORDERED>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_ppo_n128s5_f16(G90_TMA_PARAMS(f16_t)) {
    g90_pp_body<f16_t, 5, PP_ORDERED>(G90_TMA_ARGS(f16_t));
}
// Cooperative: 256 x 128 block tiles, both consumers on each (PP_COOPERATIVE): coop_n128s4, 217 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_coop_n128s4_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_pp_body<bf16_t, 4, PP_COOPERATIVE>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_coop_n128s4_f16(G90_TMA_PARAMS(f16_t)) {
    g90_pp_body<f16_t, 4, PP_COOPERATIVE>(G90_TMA_ARGS(f16_t));
}
// Cooperative on 128 x 256 block tiles, a consumer's 64 x 256 by wgmma m64n256k16: coop_n256s4, 213 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_coop_n256s4_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_pp_body<bf16_t, 4, PP_COOPERATIVE, false, 256>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) gemm_sm90_coop_n256s4_f16(G90_TMA_PARAMS(f16_t)) {
    g90_pp_body<f16_t, 4, PP_COOPERATIVE, false, 256>(G90_TMA_ARGS(f16_t));
}
// In clusters of two sharing A by multicast (MC): coopmc_n128s4 (217 KiB), ppomc_n128s5 (201 KiB).
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_coopmc_n128s4_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_pp_body<bf16_t, 4, PP_COOPERATIVE, G90_SHARE_A>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_coopmc_n128s4_f16(G90_TMA_PARAMS(f16_t)) {
    g90_pp_body<f16_t, 4, PP_COOPERATIVE, G90_SHARE_A>(G90_TMA_ARGS(f16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_ppomc_n128s5_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_pp_body<bf16_t, 5, PP_ORDERED, G90_SHARE_A>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_ppomc_n128s5_f16(G90_TMA_PARAMS(f16_t)) {
    g90_pp_body<f16_t, 5, PP_ORDERED, G90_SHARE_A>(G90_TMA_ARGS(f16_t));
}
// coop_n256s4 in clusters of two along M sharing W by multicast (cuBLAS's usual 128 x 256 tile, cluster 2 x 1):
// coopmw_n256s4, 213 KiB.
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_coopmw_n256s4_bf16(G90_TMA_PARAMS(bf16_t)) {
    g90_pp_body<bf16_t, 4, PP_COOPERATIVE, G90_SHARE_W, 256>(G90_TMA_ARGS(bf16_t));
}
extern "C" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) gemm_sm90_coopmw_n256s4_f16(G90_TMA_PARAMS(f16_t)) {
    g90_pp_body<f16_t, 4, PP_COOPERATIVE, G90_SHARE_W, 256>(G90_TMA_ARGS(f16_t));
}
