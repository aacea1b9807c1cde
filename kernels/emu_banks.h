// kernels/emu_banks.h — the emulator's shared-memory bank model: how many wavefronts (passes of the 32 banks, 4
// bytes each) every warp-wide shared access would take on the GPU, against the fewest its bytes allow. Off unless
// cpeal_emu_bank_count(1); included at the end of emu.h.
//
// What is counted: the accesses that go through lds / sts (common.cuh), ldmatrix and cp.async's shared side, each
// site named by the file and line of its call. The k-th counted access of every lane of a warp is taken as one
// warp instruction, which holds for code whose lanes take the same path. A lane that skips an access shifts the
// match: where the lanes then disagree on the site, the instruction is marked divergent and left out, but where
// they agree it is counted as matched. So measure on shapes of whole tiles (tests/gpu_banks.rs does).
// Model: a 4-byte access is served a whole warp at a time, an 8-byte one a half-warp (16 lanes) at a time, a
// 16-byte one a quarter-warp (8 lanes) at a time, as an ldmatrix serves each 8x8 matrix (8 lanes' row
// addresses). Within such a phase, lanes reading the same word share it; distinct words in one bank take one
// wavefront each. The fewest wavefronts of a phase are its distinct words / 32, rounded up.
#pragma once

namespace cpeal_emu {

struct BankSite {
    long instructions = 0;
    long wavefronts = 0;
    long ideal = 0;
    long divergent = 0;  // warp instructions whose lanes disagreed on the site or width
};
struct BankKey {
    const char* file;
    int line, bytes, store;
    bool operator<(const BankKey& o) const {
        int f = std::strcmp(file, o.file);
        if (f != 0) return f < 0;
        return std::tie(line, bytes, store) < std::tie(o.line, o.bytes, o.store);
    }
};

// Per OS thread: a launch runs on its caller's thread, and tests launch from several at once.
inline thread_local bool bank_counting = false;
inline thread_local std::map<BankKey, BankSite> bank_sites;

inline void note_shared(const void* p, int bytes, bool store, const char* file, int line) {
    if (!bank_counting) return;
    cur_thread->shared_log.push_back(SharedAccess{reinterpret_cast<uintptr_t>(p), bytes, store, file, line});
}

// Wavefronts of one phase: lanes [first, first + n) of `acc` (null for a lane without the access). (needed, least)
inline std::pair<long, long> phase_wavefronts(const SharedAccess* const* acc, int first, int n) {
    std::map<uintptr_t, int> words;  // word address -> bank
    for (int l = first; l < first + n; ++l)
        if (acc[l])
            for (int w = 0; w < acc[l]->bytes / 4; ++w) {
                uintptr_t word = acc[l]->addr / 4 + w;
                words[word] = int(word % 32);
            }
    if (words.empty()) return {0, 0};
    int per_bank[32] = {};
    for (const auto& [word, bank] : words) per_bank[bank]++;
    long needed = *std::max_element(per_bank, per_bank + 32);
    return {needed, (long(words.size()) + 31) / 32};
}

// Tally the warp instructions of every warp of block b, then forget its accesses.
inline void tally_banks(Block& b) {
    if (!bank_counting) return;
    for (size_t w0 = 0; w0 < b.threads.size(); w0 += 32) {
        size_t lanes = std::min<size_t>(32, b.threads.size() - w0), longest = 0;
        for (size_t l = 0; l < lanes; ++l) longest = std::max(longest, b.threads[w0 + l].shared_log.size());
        for (size_t k = 0; k < longest; ++k) {
            const SharedAccess* acc[32] = {};
            const SharedAccess* first = nullptr;
            bool agree = true;
            for (size_t l = 0; l < lanes; ++l) {
                const std::vector<SharedAccess>& log = b.threads[w0 + l].shared_log;
                if (k >= log.size()) continue;
                acc[l] = &log[k];
                if (!first) first = acc[l];
                agree = agree && acc[l]->line == first->line && acc[l]->bytes == first->bytes &&
                        acc[l]->store == first->store && std::strcmp(acc[l]->file, first->file) == 0;
            }
            BankSite& site = bank_sites[BankKey{first->file, first->line, first->bytes, first->store}];
            if (!agree) {
                site.divergent++;
                continue;
            }
            int per_phase = first->bytes >= 16 ? 8 : first->bytes == 8 ? 16 : 32;
            site.instructions++;
            for (int p = 0; p < 32; p += per_phase) {
                auto [needed, least] = phase_wavefronts(acc, p, per_phase);
                site.wavefronts += needed;
                site.ideal += least;
            }
        }
    }
    for (Thread& t : b.threads) t.shared_log.clear();
}

}  // namespace cpeal_emu

// The counter's interface (C wrappers in build.rs's registry, for src/gpu/emu.rs): switch it on or off (either
// clears it), and read the sites.
struct CpealBankSite {
    char file[64];
    int line, bytes, store;
    long instructions, wavefronts, ideal, divergent;
};
namespace cpeal_emu {
inline void set_bank_counting(bool on) {
    bank_counting = on;
    bank_sites.clear();
}
// How many sites there are; when that many fit in out (cap), copies them there and clears them.
inline size_t take_bank_sites(CpealBankSite* out, size_t cap) {
    size_t n = 0;
    for (const auto& [key, s] : bank_sites) {
        if (n < cap) {
            CpealBankSite& o = out[n];
            const char* base = std::strrchr(key.file, '/');
            std::snprintf(o.file, sizeof o.file, "%s", base ? base + 1 : key.file);
            o.line = key.line, o.bytes = key.bytes, o.store = key.store;
            o.instructions = s.instructions, o.wavefronts = s.wavefronts, o.ideal = s.ideal, o.divergent = s.divergent;
        }
        n++;
    }
    if (n <= cap) bank_sites.clear();
    return n;
}
}  // namespace cpeal_emu
