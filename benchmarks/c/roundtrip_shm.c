/*
 * roundtrip_shm.c -- B11's floor: a round trip of one word between two
 * processes through a pair of flags in shared memory, both sides spinning
 * (no system call, no sleep): what any inter-process hand-off costs at
 * least on this machine.
 *
 * usage: roundtrip_shm
 */
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "roundtrip.h"

#if defined(__x86_64__) || defined(__i386__)
#define PAUSE() __builtin_ia32_pause()
#else
#define PAUSE() ((void)0)
#endif

/* Each flag on a cache line of its own, written by one side only. */
typedef struct flags {
    _Alignas(64) _Atomic unsigned ping; /* parent -> child */
    _Alignas(64) _Atomic unsigned pong; /* child -> parent */
} flags;

static void await_value(_Atomic unsigned *flag, unsigned value)
{
    while (atomic_load_explicit(flag, memory_order_acquire) != value)
        PAUSE();
}

int main(void)
{
    flags *f = mmap(NULL, sizeof *f, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (f == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    const unsigned total = ROUNDTRIP_WARMUP + ROUNDTRIP_ITERS;
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        for (unsigned i = 1; i <= total; i++) {
            await_value(&f->ping, i);
            atomic_store_explicit(&f->pong, i, memory_order_release);
        }
        _exit(0);
    }
    static double seconds[ROUNDTRIP_ITERS];
    for (unsigned i = 1; i <= total; i++) {
        double start = roundtrip_now();
        atomic_store_explicit(&f->ping, i, memory_order_release);
        await_value(&f->pong, i);
        if (i > ROUNDTRIP_WARMUP)
            seconds[i - ROUNDTRIP_WARMUP - 1] = roundtrip_now() - start;
    }
    int status;
    waitpid(child, &status, 0);
    roundtrip_report(seconds, ROUNDTRIP_ITERS);
    return 0;
}
