// kernels/emu_launch.h — the emulator's launch: running a grid's blocks (and clusters of blocks) as fibers, with
// the execution model described at the top of emu.h. Included at the end of emu.h.
#pragma once

namespace cpeal_emu {

// --- launching -------------------------------------------------------------------------------------------------
// One argument by value, copied bytewise: the launcher's storage need not meet the type's alignment (a
// TmaMap is 64-byte aligned).
template <class T>
inline T load_arg(const void* p) {
    T v;
    std::memcpy(static_cast<void*>(&v), p, sizeof(T));
    return v;
}
template <class... A, size_t... I>
inline void invoke_impl(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(load_arg<std::remove_cv_t<std::remove_reference_t<A>>>(args[I])...);
}
// Unpack cuLaunchKernel-style arguments (args[i] points at the i-th parameter's value) and call the kernel.
template <class... A>
inline void invoke(void (*f)(A...), void** args) {
    invoke_impl(f, args, std::index_sequence_for<A...>{});
}

inline void on_thread_exit() {
    Block* b = cur_block;
    Thread* t = cur_thread;
    t->done = true;
    t->pending.clear();
    if (!b->wgs.empty()) {
        WarpGroup& g = b->wgs[t->linear >> 7];
        if (!g.ops.empty() && g.ops.begin()->first < t->wgmma_issued)
            fault("thread %d exited with a wgmma in flight (no wgmma.wait_group 0)", t->linear);
    }
    b->events++;
    Warp& w = b->warps[t->linear >> 5];
    b->bar.settle(--b->live);  // exited threads count as arrived at block, warp and cluster barriers
    w.bar.settle(--w.live);
    b->cluster->bar.settle(b->cluster->live());
}

inline void fiber_main() {
    cur_block->entry(cur_block->args);
    on_thread_exit();
    fiber_switch(cur_thread->fiber, cur_block->sched);  // a finished thread is never resumed
    __builtin_unreachable();
}

// Make block b ready to run from the start.
inline void reset_block(Block& b) {
    int n = int(b.threads.size());
    b.live = n;
    b.bar = Rendezvous();
    for (Warp& w : b.warps) {
        w.live = w.lanes;
        w.bar = Rendezvous();
    }
    for (int i = 0; i < n; ++i) {
        Thread& t = b.threads[i];
        t.done = false;
        t.pending.clear();
        t.open_group = 0;
        t.wgmma_issued = 0;
        t.wgmma_group = 0;
        t.nreg_issued = 0;
        t.wgmma_fenced = false;
        t.unfenced.clear();
        t.shared_log.clear();
        fiber_prepare(t.fiber, b.stacks[i], kStackBytes, fiber_main);
    }
    if (b.dyn_bytes) std::memset(b.dyn_smem, 0xff, b.dyn_bytes);
    b.fault.clear();
    b.mbars.clear();
    b.bulk.clear();
    b.wgs.assign((n + 127) / 128, WarpGroup());
    for (WarpGroup& g : b.wgs) g.regs = regs_at_launch(n);
    b.regs_free = 0;
    b.stall.clear();
    for (Rendezvous& r : b.named) r = Rendezvous();
}

// Run the blocks of cluster c to completion, their threads interleaved in one scheduler: each pass resumes every
// thread of every block once, blocks and threads in alternating directions. Returns 0, or 1 on a fault or a
// deadlock (message in err).
inline int run_cluster(Cluster& c, int start_backward, char* err, size_t errlen) {
    int remaining = 0;
    for (Block& b : c.blocks) {
        reset_block(b);
        remaining += int(b.threads.size());
    }
    c.bar = Rendezvous();
    bool backward = start_backward != 0;
    int nb = int(c.blocks.size());
    while (remaining > 0) {
        long before = 0;
        for (Block& b : c.blocks) before += b.events;
        for (int j = 0; j < nb; ++j) {
            Block& b = c.blocks[backward ? nb - 1 - j : j];
            cur_block = &b;
            block_idx = b.idx;
            int n = int(b.threads.size());
            // In a cluster, one block (the last, or the first in odd clusters) takes two turns per pass, so that
            // it gets ahead of the others as a GPU's would: a missing cross-block wait then shows.
            int turns = nb > 1 && b.rank == (start_backward ? 0 : nb - 1) ? 2 : 1;
            for (int turn = 0; turn < turns; ++turn) {
                for (int k = 0; k < n; ++k) {
                    Thread& t = b.threads[backward ? n - 1 - k : k];
                    if (t.done) continue;
                    cur_thread = &t;
                    fiber_switch(b.sched, t.fiber);
                    if (t.done) remaining--;
                }
                end_pass_sm90(b);
            }
        }
        backward = !backward;
        long after = 0;
        for (Block& b : c.blocks) after += b.events;
        for (Block& b : c.blocks)
            if (!b.fault.empty()) {
                std::snprintf(err, errlen, "block (%u,%u,%u): %s", b.idx.x, b.idx.y, b.idx.z, b.fault.c_str());
                return 1;
            }
        if (remaining > 0 && after == before) {
            const dim3& i = c.blocks[0].idx;
            std::string stalls;
            for (const Block& b : c.blocks)
                if (!b.stall.empty()) stalls += "; " + b.stall;
            std::snprintf(err, errlen,
                          "deadlock in block (%u,%u,%u)%s: %d live threads wait at barriers that cannot complete%s",
                          i.x, i.y, i.z, nb > 1 ? " and the rest of its cluster" : "", remaining, stalls.c_str());
            return 1;
        }
    }
    for (Block& b : c.blocks) tally_banks(b);
    return 0;
}

// Launch `entry` over the grid, in clusters of `cluster` blocks along x. Returns 0 on success, non-zero with a
// message in err.
inline int launch(void (*entry)(void**), const unsigned* grid, const unsigned* block, unsigned shared_bytes,
                  void** args, char* err, size_t errlen, unsigned cluster = 1) {
    unsigned nthreads = block[0] * block[1] * block[2];
    if (nthreads == 0 || nthreads > 1024 || grid[0] * grid[1] * grid[2] == 0) {
        std::snprintf(err, errlen, "invalid launch: block %ux%ux%u, grid %ux%ux%u", block[0], block[1], block[2],
                      grid[0], grid[1], grid[2]);
        return 2;
    }
    if (cluster == 0 || cluster > 8 || grid[0] % cluster != 0) {
        std::snprintf(err, errlen, "invalid launch: grid x %u is not a multiple of the cluster size %u", grid[0],
                      cluster);
        return 2;
    }
    Cluster c;
    c.blocks.resize(cluster);
    for (unsigned r = 0; r < cluster; ++r) {
        Block& b = c.blocks[r];
        b.rank = int(r);
        b.cluster = &c;
        b.entry = entry;
        b.args = args;
        b.threads.resize(nthreads);
        b.warps.resize((nthreads + 31) / 32);
        for (unsigned i = 0; i < nthreads; ++i) {
            Thread& t = b.threads[i];
            t.linear = int(i);
            t.idx = dim3(i % block[0], (i / block[0]) % block[1], i / (block[0] * block[1]));
            b.warps[i / 32].lanes++;
            b.stacks.push_back(static_cast<unsigned char*>(std::malloc(kStackBytes)));
        }
        b.dyn_bytes = shared_bytes;
        // 1024-byte aligned, like the swizzle atoms of Hopper tiles (see smem_offset).
        b.dyn_smem = shared_bytes
                         ? static_cast<unsigned char*>(std::aligned_alloc(1024, (shared_bytes + 1023) / 1024 * 1024))
                         : nullptr;
    }
    Block* saved_block = cur_block;
    Thread* saved_thread = cur_thread;
    dim3 saved_idx = block_idx;
    block_dim = dim3(block[0], block[1], block[2]);
    grid_dim = dim3(grid[0], grid[1], grid[2]);
    int rc = 0;
    // Clusters run one after another, last first: a GPU runs blocks in no set order, so a kernel whose block
    // reads what a lower block of the same launch wrote (or expects block 0 to finish first) fails here rather
    // than passing in index order.
    unsigned long long per_row = grid[0] / cluster, total = per_row * grid[1] * grid[2];
    for (unsigned long long i = total; i-- > 0 && rc == 0;) {
        unsigned x = unsigned(i % per_row) * cluster, y = unsigned(i / per_row % grid[1]),
                 z = unsigned(i / per_row / grid[1]);
        for (unsigned r = 0; r < cluster; ++r) c.blocks[r].idx = dim3(x + r, y, z);
        rc = run_cluster(c, int((x / cluster + y + z) & 1), err, errlen);
    }
    cur_block = saved_block;
    cur_thread = saved_thread;
    block_idx = saved_idx;
    for (Block& b : c.blocks) {
        for (unsigned char* s : b.stacks) std::free(s);
        std::free(b.dyn_smem);
    }
    return rc;
}

}  // namespace cpeal_emu
