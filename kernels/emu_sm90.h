// kernels/emu_sm90.h — the emulator's model of the Hopper features kernels/hopper.cuh wraps: shared-memory
// addresses, mbarriers, bulk tensor copies (TMA), named barriers and wgmma. Included at the end of emu.h; see the
// execution model there.
#pragma once

namespace cpeal_emu {

// --- Hopper: shared-memory addresses ---------------------------------------------------------------------------
// A shared-memory address is the offset into the block's dynamic shared memory (allocated 1024-byte aligned,
// so the alignment arithmetic of the kernels holds as on the GPU).
inline uint32_t smem_offset(const void* p) {
    Block* b = cur_block;
    const unsigned char* c = static_cast<const unsigned char*>(p);
    if (!b->dyn_smem || c < b->dyn_smem || c > b->dyn_smem + b->dyn_bytes) {
        fault("shared-memory address taken of a pointer outside dynamic shared memory");
        return 0;
    }
    return uint32_t(c - b->dyn_smem);
}
inline unsigned char* smem_at(uint32_t addr, size_t bytes) {
    Block* b = cur_block;
    static thread_local unsigned char scratch[16];
    if (size_t(addr) + bytes > b->dyn_bytes || bytes > sizeof scratch) {
        fault("shared address %u (+%zu bytes) is outside the %zu bytes of dynamic shared memory", addr, bytes,
              b->dyn_bytes);
        return scratch;
    }
    return b->dyn_smem + addr;
}
// Byte address `lin` of a 128-byte-swizzled buffer: 16-byte chunk bits [4,7) XOR row-in-atom bits [7,10).
inline uint32_t swizzle128(uint32_t lin) { return lin ^ (((lin >> 7) & 7u) << 4); }

// --- Hopper: mbarriers ---------------------------------------------------------------------------------------------
inline Mbar* find_mbar(Block* b, uint32_t addr, const char* what) {
    auto it = b->mbars.find(addr);
    if (it == b->mbars.end()) {
        fault("%s on shared address %u, which holds no initialised mbarrier", what, addr);
        return nullptr;
    }
    return &it->second;
}
inline void mbar_settle(Mbar& m) {
    if (m.pending == 0 && m.tx == 0) {
        m.phase ^= 1u;
        m.pending = m.count;
    }
}
inline void mbar_init(uint32_t addr, uint32_t count) {
    if (addr % 8 != 0 || count == 0) fault("mbarrier.init at %u with count %u (needs 8-byte alignment, count > 0)", addr, count);
    Mbar m;
    m.count = m.pending = count;
    m.cluster_gen = cur_block->cluster->bar.gen;
    cur_block->mbars[addr] = m;
    cur_block->events++;
}
// An arrival on block b's mbarrier, after adding `tx` expected transaction bytes (mbarrier.arrive.expect_tx).
inline void mbar_arrive_at(Block* b, uint32_t addr, int64_t tx) {
    Mbar* m = find_mbar(b, addr, "mbarrier.arrive");
    if (!m) return;
    if (m->pending == 0) {
        fault("more arrivals on the mbarrier at %u than its count %u in one phase", addr, m->count);
        return;
    }
    m->tx += tx;
    m->pending--;
    mbar_settle(*m);
    b->events++;
    cur_block->events++;
}
inline void mbar_arrive(uint32_t addr, int64_t tx) { mbar_arrive_at(cur_block, addr, tx); }
inline void mbar_complete_tx(Block* b, uint32_t addr, int64_t bytes) {
    Mbar* m = find_mbar(b, addr, "complete_tx of a bulk copy");
    if (!m) return;
    m->tx -= bytes;
    mbar_settle(*m);
    b->events++;
}
// mbarrier.try_wait.parity: whether the phase of this parity has completed.
inline bool mbar_test(uint32_t addr, uint32_t parity) {
    Mbar* m = find_mbar(cur_block, addr, "mbarrier.try_wait");
    return !m || (m->phase & 1u) != (parity & 1u);
}
inline void mbar_wait(uint32_t addr, uint32_t parity) {
    while (!mbar_test(addr, parity) && cur_block->fault.empty()) yield();
}

// --- Hopper: thread block clusters ---------------------------------------------------------------------------
inline uint32_t cluster_rank() { return uint32_t(cur_block->rank); }
// Block `rank` of this cluster, to be written to or arrived at: a fault when it does not exist or has exited
// (its shared memory is gone).
inline Block* cluster_block(uint32_t rank, const char* what) {
    Cluster& c = *cur_block->cluster;
    if (rank >= c.blocks.size()) {
        fault("%s on cluster rank %u of a cluster of %zu", what, rank, c.blocks.size());
        return nullptr;
    }
    Block* b = &c.blocks[rank];
    if (b->live == 0) {
        fault("%s on cluster rank %u, which has exited (no cluster barrier before it left?)", what, rank);
        return nullptr;
    }
    return b;
}
// Whether another block of the cluster may use block b's mbarrier at addr: initialised, and a cluster barrier
// completed since (fence.mbarrier_init + barrier.cluster make the initialisation visible to the cluster).
inline bool remote_mbar_ready(Block* b, uint32_t addr, const char* what) {
    if (b == cur_block) return true;
    Mbar* m = find_mbar(b, addr, what);
    if (m && m->cluster_gen == b->cluster->bar.gen) {
        fault("%s on an mbarrier of cluster rank %d initialised after the last cluster barrier", what, b->rank);
        return false;
    }
    return m != nullptr;
}
// mapa + mbarrier.arrive.shared::cluster: an arrival on the mbarrier at `addr` in block `rank` of the cluster.
inline void mbar_arrive_cluster(uint32_t addr, uint32_t rank) {
    Block* b = cluster_block(rank, "remote mbarrier.arrive");
    if (b && remote_mbar_ready(b, addr, "remote mbarrier.arrive")) mbar_arrive_at(b, addr, 0);
}
// barrier.cluster.arrive + wait: every live thread of every block of the cluster (exited threads count as
// arrived, as on the GPU).
inline void cluster_barrier() {
    Cluster& c = *cur_block->cluster;
    rendezvous(c.bar, c.live());
}

// --- Hopper: bulk tensor copies (TMA) --------------------------------------------------------------------------
// The emulator's tensor map (what EmuRuntime::tensor_map_2d writes into the 128-byte CUtensorMap):
// [0] kTmaMagic, [1] base address, [2] rows, [3] columns, [4] row stride (elements), [5] box rows,
// [6] box columns, [7] element bytes. Boxes land in the 128-byte swizzle (one 128-byte row per box row).
constexpr uint64_t kTmaMagic = 0x414d544c41455043ull;  // "CPEALTMA"
// The copy of box (c0, c1) of `map` to shared address dst, completing on the mbarrier at bar, checked.
inline BulkCopy bulk_copy(uint32_t dst, const void* map, int c0, int c1, uint32_t bar) {
    BulkCopy c;
    std::memcpy(c.map, map, sizeof c.map);
    if (c.map[0] != kTmaMagic) fault("bulk tensor copy with a tensor map the emulator did not make");
    if (dst % 1024 != 0) fault("128-byte-swizzled bulk copy to shared address %u, not 1024-byte aligned", dst);
    if (c.map[6] * c.map[7] != 128) fault("bulk copy box rows of %llu bytes (the swizzle needs 128)",
                                          (unsigned long long)(c.map[6] * c.map[7]));
    c.dst = dst;
    c.c0 = c0;
    c.c1 = c1;
    c.bar = bar;
    return c;
}
inline void tma_load_2d(uint32_t dst, const void* map, int c0, int c1, uint32_t bar) {
    cur_block->bulk.push_back(bulk_copy(dst, map, c0, c1, bar));
}
// .multicast::cluster: the same box into every block of the cluster whose bit is set in `mask`, at the same
// shared address, each completing its own mbarrier at `bar`.
inline void tma_load_2d_multicast(uint32_t dst, const void* map, int c0, int c1, uint32_t bar, uint16_t mask) {
    if (mask == 0) fault("multicast bulk copy with an empty CTA mask");
    BulkCopy copy = bulk_copy(dst, map, c0, c1, bar);
    for (uint32_t r = 0; r < 16; ++r) {
        if (!(mask >> r & 1)) continue;
        Block* b = cluster_block(r, "multicast bulk copy");
        if (!b || !remote_mbar_ready(b, bar, "multicast bulk copy")) return;
        b->bulk.push_back(copy);
        b->events++;
    }
}
// Land the copies issued during the last scheduler pass (zero fill outside the matrix, as the hardware does).
inline void land_bulk_copies(Block& b) {
    for (const BulkCopy& c : b.bulk) {
        const unsigned char* base = reinterpret_cast<const unsigned char*>(c.map[1]);
        long rows = long(c.map[2]), cols = long(c.map[3]), ld = long(c.map[4]);
        long box_rows = long(c.map[5]), box_cols = long(c.map[6]), esz = long(c.map[7]);
        for (long r = 0; r < box_rows; ++r)
            for (long j = 0; j < box_cols; ++j) {
                long gr = c.c1 + r, gc = c.c0 + j;
                uint32_t phys = swizzle128(uint32_t(c.dst + r * 128 + j * esz));
                unsigned char* dst = smem_at(phys, size_t(esz));
                if (gr >= 0 && gr < rows && gc >= 0 && gc < cols)
                    std::memcpy(dst, base + (gr * ld + gc) * esz, size_t(esz));
                else
                    std::memset(dst, 0, size_t(esz));
            }
        mbar_complete_tx(&b, c.bar, box_rows * 128);
    }
    b.bulk.clear();
}

// --- Hopper: named barriers (bar.sync / bar.arrive id, n) -----------------------------------------------------
// One arrival at barrier `id` of `n` threads; bar.sync (`wait`) then waits for the barrier to complete.
inline void named_barrier(int id, int n, bool wait) {
    Block* b = cur_block;
    if (id < 1 || id > 15 || n <= 0 || n % 32 != 0) {
        fault("bar.sync %d, %d: id must be 1..15 (0 is __syncthreads) and the count a multiple of 32", id, n);
        return;
    }
    Rendezvous& r = b->named[id];
    if (r.arrived == 0) b->nb_count[id] = n;
    else if (b->nb_count[id] != n) fault("bar.sync %d with %d threads while others wait for %d", id, n, b->nb_count[id]);
    if (wait) {
        rendezvous(r, n);
    } else {
        b->events++;
        r.arrive(n);
    }
}

// --- Hopper: wgmma (warpgroup collective, operands from 128-byte-swizzled K-major shared tiles) ---------------
inline WarpGroup& cur_wg() { return cur_block->wgs[cur_thread->linear >> 7]; }
// One thread's part of a wgmma: its accumulators, and A's fragment when A comes from registers (`a`, else null).
inline void wgmma_issue_op(float* d, int n, uint64_t da, const uint32_t* a, uint64_t db, int dtype, bool tnsp_b) {
    Thread* t = cur_thread;
    WarpGroup& g = cur_wg();
    long idx = t->wgmma_issued++;
    if (n < 8 || n > 256 || n % 8 != 0) fault("wgmma with N = %d (8..256, a multiple of 8)", n);
    if (tnsp_b && n > 64) fault("wgmma with an MN-major B of N = %d (the emulator models N <= 64)", n);
    WgmmaOp& op = g.ops[idx];
    bool a_regs = a != nullptr;
    if (op.issued == 0) {
        op.da = da, op.db = db, op.n = n, op.dtype = dtype, op.group = t->wgmma_group;
        op.a_regs = a_regs, op.tnsp_b = tnsp_b;
    } else if (op.da != da || op.db != db || op.n != n || op.dtype != dtype || op.group != t->wgmma_group ||
               op.a_regs != a_regs || op.tnsp_b != tnsp_b) {
        fault("wgmma #%ld of warpgroup %d: its threads disagree on the descriptors, shape, operands or group", idx,
              t->linear >> 7);
    }
    if (!t->wgmma_fenced)
        fault("wgmma #%ld of thread %d with no wgmma.fence since the thread's start or its last wgmma.wait_group", idx,
              t->linear);
    if (a_regs) {
        std::memcpy(op.a[t->linear & 127], a, sizeof op.a[0]);
        op.a_src[t->linear & 127] = a;
    }
    op.d[t->linear & 127] = d;
    op.issued++;
}
inline void wgmma_issue(float* d, int n, uint64_t da, uint64_t db, int dtype) {
    wgmma_issue_op(d, n, da, nullptr, db, dtype, false);
}
inline void wgmma_commit() { cur_thread->wgmma_group++; }
// wgmma.fence: the thread's register accesses before it are ordered before the wgmma after it. The model asks for
// one before the first wgmma and after every wgmma.wait_group (whose accumulators the code then reads or resets):
// stricter than PTX only where nothing touched the registers in between.
inline void wgmma_fence() { cur_thread->wgmma_fenced = true; }
// fence.proxy.async: the thread's generic-proxy writes to shared memory (its cp.async landings) become visible to
// the async proxy (wgmma, TMA).
inline void fence_proxy_async() { cur_thread->unfenced.clear(); }
// A 16-bit element's bits as f32: dtype 0 bf16, 1 f16.
inline float half_bits_to_f32(uint16_t bits, int dtype) {
    return dtype == 0 ? bf16_bits_to_f32(bits) : f16_bits_to_f32(bits);
}
// Element (row, i) of an operand in the 128-byte swizzle: rows of 64 elements, 8-row atoms `sbo` apart. K-major
// operands have a row per M or N index and i = k; MN-major ones (N <= 64) a row per k and i = the N index.
inline float wgmma_operand(uint64_t desc, int row, int i, int dtype) {
    uint32_t start = uint32_t(desc & 0x3FFFu) << 4, sbo = uint32_t((desc >> 32) & 0x3FFFu) << 4;
    if ((desc >> 62) != 1) fault("wgmma descriptor with swizzle mode %u (the emulator models 128-byte only)",
                                 unsigned(desc >> 62));
    uint32_t lin = start + uint32_t(row >> 3) * sbo + uint32_t(row & 7) * 128 + uint32_t(i) * 2;
    uint16_t bits;
    std::memcpy(&bits, smem_at(swizzle128(lin), 2), 2);
    return half_bits_to_f32(bits, dtype);
}
// D[64 x n] += A[64 x 16] · B[n x 16]ᵀ for all 128 threads. Register 4q + 2h + e of thread (warp w, lane l)
// holds row 16w + l/4 + 8h, column 8q + 2(l%4) + e. A from registers: thread (w, l) holds, low half first,
// a[0] = row 16w + l/4, k 2(l%4) + {0, 1}; a[1] the row 8 below; a[2], a[3] the same rows at k + 8 (the
// mma.m16n8k16 A fragment of each warp's 16 rows).
inline void wgmma_execute(const WgmmaOp& op) {
    float a[64][16];
    for (int l = 0; op.a_regs && l < 128; ++l)
        if (std::memcmp(op.a[l], op.a_src[l], sizeof op.a[l]) != 0) {
            fault("thread %d of a warpgroup wrote the register A fragment of its wgmma in flight (no wgmma.wait_group "
                  "before)", l);
            return;
        }
    if (op.a_regs) {
        for (int l = 0; l < 128; ++l)
            for (int j = 0; j < 4; ++j)
                for (int e = 0; e < 2; ++e) {
                    int row = 16 * (l >> 5) + ((l & 31) >> 2) + 8 * (j & 1), k = 2 * (l & 3) + 8 * (j >> 1) + e;
                    a[row][k] = half_bits_to_f32(uint16_t(op.a[l][j] >> (16 * e)), op.dtype);
                }
    } else {
        for (int r = 0; r < 64; ++r)
            for (int k = 0; k < 16; ++k) a[r][k] = wgmma_operand(op.da, r, k, op.dtype);
    }
    static thread_local float bt[256 * 16];  // N <= 256; the scheduler's thread, not a fiber stack
    for (int c = 0; c < op.n; ++c)
        for (int k = 0; k < 16; ++k)
            bt[c * 16 + k] = op.tnsp_b ? wgmma_operand(op.db, k, c, op.dtype) : wgmma_operand(op.db, c, k, op.dtype);
    for (int l = 0; l < 128; ++l) {
        int w = l >> 5, lane = l & 31;
        for (int i = 0; i < op.n / 2; ++i) {
            int q = i >> 2, h = (i >> 1) & 1, e = i & 1;
            int row = 16 * w + (lane >> 2) + 8 * h, col = 8 * q + 2 * (lane & 3) + e;
            float s = 0.0f;
            for (int k = 0; k < 16; ++k) s += a[row][k] * bt[col * 16 + k];
            op.d[l][i] += s;
        }
    }
}
// The interval of shared memory a K-major swizzled operand of `rows` rows covers (whole 128-byte rows).
inline void wgmma_operand_span(uint64_t desc, int rows, uint32_t& lo, uint32_t& hi) {
    uint32_t start = uint32_t(desc & 0x3FFFu) << 4, sbo = uint32_t((desc >> 32) & 0x3FFFu) << 4;
    uint32_t first = start & ~127u, last = (start + uint32_t((rows - 1) >> 3) * sbo + uint32_t((rows - 1) & 7) * 128) & ~127u;
    lo = first;
    hi = last + 128;
}
// An asynchronous write (a bulk copy or a cp.async landing) into shared memory that a wgmma not yet retired
// reads: a race on the GPU, a failed launch here.
inline void check_async_write(Block& b, uint32_t lo, uint32_t hi, const char* what) {
    for (size_t g = 0; g < b.wgs.size(); ++g)
        for (const auto& [idx, op] : b.wgs[g].ops) {
            uint32_t alo = 0, ahi = 0, blo, bhi;
            if (!op.a_regs) wgmma_operand_span(op.da, 64, alo, ahi);
            wgmma_operand_span(op.db, op.tnsp_b ? 16 : op.n, blo, bhi);  // MN-major: 16 rows, one per k
            if ((lo < ahi && alo < hi) || (lo < bhi && blo < hi))
                fault("%s writes shared bytes [%u, %u) that wgmma #%ld of warpgroup %zu still reads (released "
                      "before wgmma.wait_group, or read before the copy's barrier)",
                      what, lo, hi, idx, g);
        }
}
inline void check_cp_async_write(const unsigned char* dst) {
    Block* b = cur_block;
    if (b->wgs.empty() || dst < b->dyn_smem || dst >= b->dyn_smem + b->dyn_bytes) return;
    uint32_t at = uint32_t(dst - b->dyn_smem);
    check_async_write(*b, at, at + 16, "a cp.async landing");
    cur_thread->unfenced.push_back(at);
}
// A wgmma about to read its operands: none of their bytes may be a cp.async landing its thread has not yet made
// visible to the async proxy (fence.proxy.async).
inline void check_operands_fenced(Block& b, const WgmmaOp& op, long idx, size_t wg) {
    uint32_t alo = 0, ahi = 0, blo, bhi;
    if (!op.a_regs) wgmma_operand_span(op.da, 64, alo, ahi);
    wgmma_operand_span(op.db, op.tnsp_b ? 16 : op.n, blo, bhi);
    for (const Thread& t : b.threads)
        for (uint32_t at : t.unfenced)
            if ((at < ahi && alo < at + 16) || (at < bhi && blo < at + 16)) {
                fault("wgmma #%ld of warpgroup %zu reads shared bytes [%u, %u) that thread %d's cp.async wrote with no "
                      "fence.proxy.async since",
                      idx, wg, at, at + 16, t.linear);
                return;
            }
}

// wgmma.wait_group n: until every group but the n newest of this thread has retired (for the whole warpgroup).
// wgmma retire only at the end of a scheduler pass (end_pass_sm90), so their operands stay in flight meanwhile.
inline void wgmma_wait(int n) {
    Thread* t = cur_thread;
    long last = t->wgmma_group - 1 - n;
    int wg = t->linear >> 7;
    int members = std::min(128, int(cur_block->threads.size()) - wg * 128);
    if (members != 128) fault("wgmma from warpgroup %d, which has %d threads, not 128", wg, members);
    WarpGroup& g = cur_wg();
    while (!g.ops.empty() && g.ops.begin()->second.group <= last && cur_block->fault.empty()) yield();
    t->wgmma_fenced = false;
}

// After each scheduler pass: bulk copies issued in the pass must not land on in-flight wgmma operands; then every
// wgmma all 128 threads have issued retires (reading its operands now, the latest the hardware could), then the
// copies land.
inline void end_pass_sm90(Block& b) {
    for (const BulkCopy& c : b.bulk) check_async_write(b, c.dst, c.dst + uint32_t(c.map[5]) * 128, "a bulk tensor copy");
    for (WarpGroup& g : b.wgs)
        while (!g.ops.empty() && g.ops.begin()->second.issued == 128) {
            check_operands_fenced(b, g.ops.begin()->second, g.ops.begin()->first, size_t(&g - b.wgs.data()));
            wgmma_execute(g.ops.begin()->second);
            g.ops.erase(g.ops.begin());
            b.events++;
        }
    land_bulk_copies(b);
}

// --- Hopper: register reallocation (setmaxnreg.{inc,dec}.sync.aligned) ---------------------------------------
// A block starts with regs_at_launch registers a thread, every one of them allocated: what ptxas gives a kernel
// that uses setmaxnreg under __launch_bounds__(threads, 1) (tests/nvrtc_check.rs holds it to that). A .dec hands
// a warpgroup's surplus to the block's pool; an .inc waits until the pool holds what it asks for, for ever when it
// never will: a hang on the GPU, a deadlock naming the instruction here. All 128 threads of the warpgroup take
// part, with the same count.
inline void setmaxnreg(int regs, bool inc) {
    Block* b = cur_block;
    Thread* t = cur_thread;
    const char* op = inc ? "setmaxnreg.inc" : "setmaxnreg.dec";
    int wg = t->linear >> 7, members = std::min(128, int(b->threads.size()) - wg * 128);
    if (members != 128) {
        fault("%s from warpgroup %d, which has %d threads, not 128", op, wg, members);
        return;
    }
    WarpGroup& g = cur_wg();
    long idx = t->nreg_issued++;
    if (g.nreg_arrived == 0) {
        g.nreg_target = regs, g.nreg_inc = inc;
    } else if (g.nreg_target != regs || g.nreg_inc != inc) {
        fault("%s %d in warpgroup %d while its other threads are at setmaxnreg.%s %d", op, regs, wg,
              g.nreg_inc ? "inc" : "dec", g.nreg_target);
        return;
    }
    if (inc ? regs < g.regs : regs > g.regs) {
        fault("%s %d in warpgroup %d, which holds %d registers a thread", op, regs, wg, g.regs);
        return;
    }
    g.nreg_arrived++;
    b->events++;
    long delta = long(regs - g.regs) * 128;  // registers the warpgroup takes from the pool (< 0: gives back)
    while (g.nreg_done <= idx && b->fault.empty()) {
        if (g.nreg_arrived == 128 && b->regs_free >= delta) {
            b->regs_free -= delta;
            g.regs = regs, g.nreg_arrived = 0, g.nreg_done++;
            b->stall.clear();
            b->events++;
            return;
        }
        if (g.nreg_arrived == 128) {
            char note[160];
            std::snprintf(note, sizeof note, "%s %d of warpgroup %d waits for %ld registers, the pool has %ld", op,
                          regs, wg, delta, b->regs_free);
            b->stall = note;
        }
        yield();
    }
}

}  // namespace cpeal_emu
