// kernels/emu_fiber.h — the emulator's fibers: the threads of a block, each on its own stack, switched
// cooperatively with the scheduler (emu_launch.h). Included by emu.h.
//
// On x86-64 a switch saves the callee-saved registers on the old stack and loads the new stack pointer: a few
// instructions. glibc's swapcontext also saves and restores the signal mask, a system call per switch, which
// was most of the emulator's time (a barrier is two switches per thread). Elsewhere, or with
// CPEAL_EMU_UCONTEXT defined, ucontext does it.
#pragma once

#if defined(__x86_64__) && !defined(CPEAL_EMU_UCONTEXT)
#define CPEAL_EMU_FAST_FIBERS 1
#else
#include <ucontext.h>
#endif

#include <cstddef>
#include <cstdint>

namespace cpeal_emu {

#if CPEAL_EMU_FAST_FIBERS

struct Fiber {
    void* sp = nullptr;  // the saved stack pointer while it is not running
};

// Save the callee-saved registers and the stack pointer of the running fiber in *save, then resume the fiber
// whose stack pointer is `to`. Opaque to the optimiser (noipa): to its callers an ordinary call that may read and
// write any memory, as a switch to another thread must be.
extern "C" __attribute__((naked, noinline
#if !defined(__clang__)
                          ,
                          noipa
#endif
                          )) inline void
cpeal_emu_fiber_switch(void** /*save*/, void* /*to*/) {
    asm volatile(
        "pushq %rbp\n\t"
        "pushq %rbx\n\t"
        "pushq %r12\n\t"
        "pushq %r13\n\t"
        "pushq %r14\n\t"
        "pushq %r15\n\t"
        "movq %rsp, (%rdi)\n\t"
        "movq %rsi, %rsp\n\t"
        "popq %r15\n\t"
        "popq %r14\n\t"
        "popq %r13\n\t"
        "popq %r12\n\t"
        "popq %rbx\n\t"
        "popq %rbp\n\t"
        "ret\n\t");
}

inline void fiber_switch(Fiber& from, Fiber& to) { cpeal_emu_fiber_switch(&from.sp, to.sp); }

// Make `f` start `entry` (which must never return) on the stack [stack, stack + bytes) at its next switch.
inline void fiber_prepare(Fiber& f, unsigned char* stack, size_t bytes, void (*entry)()) {
    auto top = reinterpret_cast<void**>((reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15));
    void** sp = top;
    *--sp = nullptr;                            // entry's return address: none (16 bytes below top, as a call leaves it)
    *--sp = reinterpret_cast<void*>(entry);     // where the switch's `ret` goes
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12–r15
    f.sp = sp;
}

#else

struct Fiber {
    ucontext_t ctx;
};

inline void fiber_switch(Fiber& from, Fiber& to) { swapcontext(&from.ctx, &to.ctx); }

inline void fiber_prepare(Fiber& f, unsigned char* stack, size_t bytes, void (*entry)()) {
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = bytes;
    f.ctx.uc_link = nullptr;  // entry never returns
    makecontext(&f.ctx, entry, 0);
}

#endif

}  // namespace cpeal_emu
