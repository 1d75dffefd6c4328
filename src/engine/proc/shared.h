/*
 * shared.h -- what the host and a device process share: the layout of
 * the control area at the start of the arena, and the wake-up protocol on
 * its mailboxes.  Included by the engine (the files of proc/) and by the device
 * executable (proc/device_main.c).
 *
 * The arena is one memfd mapped at the same address in both processes, so
 * every pointer in it (device memory, mailbox fields) means the same on
 * both sides.  Its first PROC_CONTROL_BYTES hold the mailboxes; one guard
 * page (PROT_NONE in the device process) separates them from device
 * memory, so a kernel running off the start of the first allocation
 * faults instead of rewriting a mailbox.
 *
 * Mailbox protocol (one mailbox per stream, index 0 for control
 * requests).  Two 32-bit counters, each written by one side only:
 *   posted  host:   fill the request, then posted + 1 (seq_cst store);
 *   done    device: run it, write the reply, then done = posted.
 * Each side waits for the other's counter to move by spinning for a
 * bounded window, then sleeping on a *shared* futex (the words are in a
 * MAP_SHARED mapping of two processes; FUTEX_PRIVATE would not see the
 * other process).  A waiter announces itself in its `*_sleeping` word
 * before sleeping, so the other side makes the futex system call only
 * when someone sleeps: when both sides spin, a request and its answer are
 * two cache-line hand-offs and no system call.  Each request carries the
 * window the device thread may spin for the *next* request after
 * answering (`spin_ns`; 0: sleep at once); the host chooses it (see
 * backend.c, mailbox_call).  A device thread stops spinning as soon as a
 * kernel of any stream runs in the device process (`kernels_running`):
 * that kernel's OpenMP team needs the core.  Each side publishes the CPU
 * it last ran on (`host_cpu`, `device_cpu`) so that two spinners on one
 * CPU notice it (device_main.c steps aside; proc_await_change yields).  When the device process
 * dies, the host's monitor sets PROC_LOST in every `done` and wakes every
 * waiter: a host never waits for a dead process.
 */
#ifndef PYMIC_PROC_SHARED_H
#define PYMIC_PROC_SHARED_H

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pymic.h"

/* Built with ThreadSanitizer (GCC says so with a macro, clang with
 * __has_feature). */
#if defined(__SANITIZE_THREAD__)
#define PROC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PROC_TSAN 1
#endif
#endif
#ifndef PROC_TSAN
#define PROC_TSAN 0
#endif

#define PROC_MAILBOXES 256         /* control + 255 streams per device */
#define PROC_LOST 0x80000000u      /* in `done`: the device process died */
#define PROC_COUNT_MASK 0x7fffffffu
#define PROC_TEXT_MAX 4096

enum proc_request {
    PROC_REQ_PING = 1,  /* control: answer (start-up handshake)            */
    PROC_REQ_LOAD,      /* control: load the host's descriptor `index`, if
                           it is file (dev handle, inode address); else the
                           path in text -> handle, or error text; nargs 1:
                           by the path in text if that is the same file   */
    PROC_REQ_FIND,      /* control: kernel text in handle -> address       */
    PROC_REQ_CLOSE,     /* control: dlclose handle                         */
    PROC_REQ_START,     /* control: serve mailbox `index`, seen = handle   */
    PROC_REQ_PROTECT,   /* control: page at handle PROT_NONE (index 0) or
                           read-write (index 1): bounds-check guard pages */
    PROC_REQ_INVOKE,    /* stream: call address(args)                      */
    PROC_REQ_QUIT       /* stream: the serving thread ends                 */
};

typedef struct proc_mailbox {
    _Alignas(64) _Atomic uint32_t posted;
    _Atomic uint32_t device_sleeping;
    _Atomic int32_t host_cpu;   /* where the host side last posted or waited */
    _Alignas(64) _Atomic uint32_t done;
    _Atomic uint32_t host_sleeping;
    _Atomic int32_t device_cpu; /* where the device thread last took or waited */
    _Alignas(64) uint32_t request;
    int32_t nargs;       /* INVOKE: arguments; LOAD: by path (0/1)   */
    int32_t status;      /* reply: 0 or -1 (reason in text)          */
    uint32_t index;      /* START: the mailbox to serve; LOAD: fd    */
    uint64_t handle;     /* LOAD device / reply; FIND, CLOSE input;
                            START seen                               */
    uint64_t address;    /* LOAD inode; FIND reply; INVOKE kernel    */
    uint64_t spin_ns;    /* how long the device thread may spin for
                            the next request after answering this one */
    void *args[PYMIC_MAX_KERNEL_ARGS];
    _Alignas(16) unsigned char scalars[PYMIC_MAX_SCALAR_BYTES];
    char text[PROC_TEXT_MAX];
} proc_mailbox;

typedef struct proc_control {
    proc_mailbox mailbox[PROC_MAILBOXES];
    /* The address of the device process's last SIGSEGV/SIGBUS (0: none),
     * written by its signal handler just before it dies. */
    _Atomic uint64_t fault_address;
    /* Kernels running in the device process now (all streams): a device
     * thread waiting for its next request spins only while this is 0. */
    _Alignas(64) _Atomic uint32_t kernels_running;
} proc_control;

#define PROC_PAGE 4096u
#define PROC_ROUND_UP(n, a) (((n) + (a) - 1) / (a) * (a))
/* Control area, then one guard page, then device memory. */
#define PROC_CONTROL_BYTES PROC_ROUND_UP(sizeof(proc_control), PROC_PAGE)
#define PROC_DATA_OFFSET (PROC_CONTROL_BYTES + PROC_PAGE)

/* Exit codes of the device process that explain a failed start. */
#define PROC_EXIT_USAGE 120
#define PROC_EXIT_PARENT 121     /* its parent was gone before it started  */
#define PROC_EXIT_MAP 122        /* MAP_FIXED_NOREPLACE refused the address */
#define PROC_EXIT_AFFINITY 123
#define PROC_EXIT_GROUP 124      /* not started in a process group of its own */

static inline uint64_t proc_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void proc_futex_wait(_Atomic uint32_t *word, uint32_t expected)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, NULL, NULL, 0);
}

static inline void proc_futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static inline void proc_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* This thread's CPU, published in *mine for the other side's spinner;
 * returns it. */
static inline int proc_note_cpu(_Atomic int32_t *mine)
{
    int cpu = sched_getcpu(); /* a read of the rseq area: no system call */
    if (atomic_load_explicit(mine, memory_order_relaxed) != cpu)
        atomic_store_explicit(mine, cpu, memory_order_relaxed);
    return cpu;
}

/* Wait until *word differs from `old`; returns the new value.  Spins for
 * up to spin_ns first (stopping early once *stop, if given, is nonzero),
 * then sleeps.  The other side's thread last ran on *peer_cpu: while
 * that is this thread's CPU, it cannot run there while this one spins,
 * so the spinner yields its CPU instead of waiting out the window.  (The
 * scheduler puts two threads that wake each other on one CPU; two
 * threads that stay runnable -- spinning and yielding -- it spreads over
 * idle CPUs, after which neither yields.) */
static inline uint32_t proc_await_change(_Atomic uint32_t *word, uint32_t old,
                                         _Atomic uint32_t *sleeping, uint64_t spin_ns,
                                         _Atomic uint32_t *stop, _Atomic int32_t *my_cpu,
                                         _Atomic int32_t *peer_cpu)
{
    uint32_t now = atomic_load_explicit(word, memory_order_acquire);
    if (now != old)
        return now;
    if (spin_ns) {
        uint64_t start = proc_now_ns();
        int cpu = proc_note_cpu(my_cpu);
        for (unsigned i = 1;; i++) {
            proc_pause();
            now = atomic_load_explicit(word, memory_order_acquire);
            if (now != old)
                return now;
            if ((i & 63) != 0)
                continue;
            if ((stop && atomic_load_explicit(stop, memory_order_relaxed)) ||
                proc_now_ns() - start >= spin_ns)
                break;
            if (atomic_load_explicit(peer_cpu, memory_order_relaxed) == cpu) {
                sched_yield();
                cpu = proc_note_cpu(my_cpu);
            }
        }
    }
    for (;;) {
        atomic_store_explicit(sleeping, 1, memory_order_seq_cst);
        now = atomic_load_explicit(word, memory_order_seq_cst);
        if (now != old)
            break;
        proc_futex_wait(word, old);
        now = atomic_load_explicit(word, memory_order_acquire);
        if (now != old)
            break;
    }
    atomic_store_explicit(sleeping, 0, memory_order_relaxed);
    return now;
}

/* Store `value` in *word and wake its waiter if it sleeps. */
static inline void proc_store_and_wake(_Atomic uint32_t *word, uint32_t value,
                                       _Atomic uint32_t *sleeping)
{
    atomic_store_explicit(word, value, memory_order_seq_cst);
    if (atomic_load_explicit(sleeping, memory_order_seq_cst))
        proc_futex_wake(word);
}

#endif /* PYMIC_PROC_SHARED_H */
