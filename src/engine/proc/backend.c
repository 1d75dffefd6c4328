/*
 * backend.c -- the process device's operation table (backend.h).
 *
 * Device memory is a memfd arena mapped at the same address here and in
 * the device process (arena.c): a copy is one memcpy by the stream's host
 * worker, as on the host device.  An invoke is handed by the host worker
 * to the stream's thread in the device process through the stream's
 * mailbox (shared.h), and the host worker waits for its answer -- or for
 * the monitor's word that the process died (monitor.c).  Libraries are
 * opened, and kernels looked up, in the device process through control
 * requests; kernel addresses are the device process's.
 */
#include "proc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Kernels whose last run on a stream outlasted the spin window, by a
 * hash of their handle (a collision only costs a spin or a sleep). */
#define PROC_SLOW_SLOTS 16

/* The host worker's state for one stream of a process device. */
typedef struct proc_stream {
    int index;                    /* its mailbox */
    struct pymic_copy_team *team; /* host helpers for big copies */
    void *(*body)(void *);        /* the engine's worker loop */
    /* Touched only by the thread that runs the stream's current command
     * (commands run one at a time, stream.c). */
    const struct pymic_kernel *slow[PROC_SLOW_SLOTS];
} proc_stream;

/* Set on the host worker threads of process-device streams. */
static _Thread_local bool on_proc_worker;

static proc_device *state_of(pymic_device *device)
{
    return device->backend;
}

static uint64_t spin_ns(void)
{
    return atomic_load_explicit(&pymic_global.spin_ns, memory_order_relaxed);
}

/* Post the filled request of `mb` and wait for its answer, spinning for
 * host_spin_ns first; after answering, the device thread may spin for
 * device_spin_ns waiting for the next request.  False if the device
 * process is (or became) lost. */
static bool mailbox_call(proc_mailbox *mb, uint32_t request, uint64_t host_spin_ns,
                         uint64_t device_spin_ns)
{
    uint32_t before = atomic_load_explicit(&mb->done, memory_order_acquire);
    if (before & PROC_LOST)
        return false;
    mb->request = request;
    mb->spin_ns = device_spin_ns;
    uint32_t next = (atomic_load_explicit(&mb->posted, memory_order_relaxed) + 1) & PROC_COUNT_MASK;
    proc_store_and_wake(&mb->posted, next, &mb->device_sleeping);
    uint32_t now = proc_await_change(&mb->done, before, &mb->host_sleeping, host_spin_ns, NULL,
                                     &mb->host_cpu, &mb->device_cpu);
    return !(now & PROC_LOST);
}

int proc_control_call(proc_device *pd, uint32_t request)
{
    if (atomic_load(&pd->device->lost))
        return PYMIC_ERR_DEVICE_LOST;
    proc_mailbox *mb = &pd->control->mailbox[0];
    if (!mailbox_call(mb, request, spin_ns(), 0))
        return PYMIC_ERR_DEVICE_LOST;
    return mb->status == 0 ? PYMIC_OK : -1;
}

/* ------------------------------------------------------------ device life */

/* Device memory: the limit at start-up, at most 1 TiB of address space
 * (sparse: only what is touched takes memory). */
static size_t arena_bytes(const pymic_device *device)
{
    size_t limit = device->memory_limit;
    size_t most = (size_t)1 << 40;
    if (limit > most)
        limit = most;
    return PROC_DATA_OFFSET + PROC_ROUND_UP(limit, PROC_PAGE);
}

/* Where the arena may go: a random 1 GiB-aligned address in [lo, hi)
 * with room for `bytes` (false: no room). */
static bool hint_range(size_t bytes, uintptr_t *lo, uint64_t *slots)
{
    const uintptr_t gib = (uintptr_t)1 << 30;
#if PROC_TSAN
    /* ThreadSanitizer keeps its shadow where the others' hints lie and
     * refuses to map there; its application memory starts at address 0
     * (512 GiB in GCC's layout, 2 TiB in newer ones), where nothing of a
     * position-independent program lives: 64 to 448 GiB. */
    uintptr_t from = 64 * gib, to = 448 * gib;
#else
    /* Above AddressSanitizer's shadow (which ends 2 GiB past 16 TiB). */
    uintptr_t from = (uintptr_t)16 << 40, to = (uintptr_t)80 << 40;
#endif
    if (bytes > to - from)
        return false;
    *lo = from;
    *slots = (to - from - bytes) / gib + 1;
    return true;
}

/* Map the arena where a freshly started process has nothing: the device
 * process maps it at the same address after its loader and libraries
 * have taken theirs, and those go near the top of the address space
 * (shared objects, thread stacks) or near the executable.  A random
 * 1 GiB-aligned address between 16 and 80 TiB (with ThreadSanitizer:
 * between 64 and 448 GiB) is free in both in practice; if the system
 * refuses every try, the kernel chooses. */
static void *map_arena(int fd, size_t bytes)
{
    int flags = MAP_SHARED | MAP_NORESERVE;
    uint64_t state = pymic_now_ns() ^ ((uint64_t)getpid() << 32);
    uintptr_t lo;
    uint64_t slots;
    bool room = hint_range(bytes, &lo, &slots);
    for (int attempt = 0; room && attempt < 16; attempt++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        uintptr_t hint = lo + (uintptr_t)((state >> 33) % slots) * ((uintptr_t)1 << 30);
        void *at = mmap((void *)hint, bytes, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE,
                        fd, 0);
        if (at == (void *)hint)
            return at;
        if (at != MAP_FAILED)
            munmap(at, bytes); /* an old kernel took the hint as a hint */
    }
    return mmap(NULL, bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
}

static bool proc_open(pymic_device *device)
{
    proc_device *pd = calloc(1, sizeof *pd);
    if (!pd)
        return false;
    pd->device = device;
    pthread_mutex_init(&pd->lock, NULL);
    pthread_mutex_init(&pd->control_lock, NULL);
    pthread_cond_init(&pd->cond, NULL);
    device->backend = pd;
    pd->total = arena_bytes(device);
    /* Passed to the device process by inheritance only: no name in any
     * file system, close-on-exec for every other program. */
    pd->memfd = memfd_create("pymic-device-memory", MFD_CLOEXEC);
    if (pd->memfd < 0 || ftruncate(pd->memfd, (off_t)pd->total) != 0) {
        pymic_device_mark_lost(device, "device %d lost: cannot create its memory: %s",
                               device->id, strerror(errno));
        return true;
    }
    void *base = map_arena(pd->memfd, pd->total);
    if (base == MAP_FAILED) {
        pymic_device_mark_lost(device, "device %d lost: cannot map its memory: %s", device->id,
                               strerror(errno));
        return true;
    }
    /* A fork()ed child of this program must not write into the device's
     * memory (the device process belongs to the parent). */
    madvise(base, pd->total, MADV_DONTFORK);
    pd->base = base;
    pd->control = base;
    if (!proc_arena_init(pd) || !proc_monitor_start(pd))
        return false;
    pthread_mutex_lock(&pd->control_lock);
    if (proc_control_call(pd, PROC_REQ_PING) != PYMIC_OK)
        pymic_log(1, "%s", device->lost_why);
    pthread_mutex_unlock(&pd->control_lock);
    return true;
}

/* --------------------------------------------------------------- memory */

/* Make the page at `guard` inaccessible (or accessible again) in the
 * device process.  Lost: nothing to do (a reset protects the live guards
 * in the new process). */
static void protect_guard(proc_device *pd, uintptr_t guard, bool accessible)
{
    pthread_mutex_lock(&pd->control_lock);
    proc_mailbox *mb = &pd->control->mailbox[0];
    mb->handle = guard;
    mb->index = accessible;
    if (proc_control_call(pd, PROC_REQ_PROTECT) == -1)
        pymic_log(1, "device %d: cannot change the guard page at %p", pd->device->id,
                  (void *)guard);
    pthread_mutex_unlock(&pd->control_lock);
}

/* PYMIC_CHECK=bounds: a page-aligned span of its own per allocation, the
 * block placed just before a guard page at its end, with the canaries of
 * bounds.c before it and up to the guard. */
static pymic_block *bounds_block_get(proc_device *pd, size_t nbytes, size_t alignment)
{
    size_t span = pymic_bounds_span(nbytes, alignment, 0) + PROC_PAGE;
    pthread_mutex_lock(&pd->arena_lock);
    bool room = true;
    if (pd->nguards == pd->guards_capacity) {
        size_t capacity = pd->guards_capacity ? 2 * pd->guards_capacity : 64;
        uintptr_t *grown = realloc(pd->guards, capacity * sizeof *grown);
        room = grown != NULL;
        if (grown) {
            pd->guards = grown;
            pd->guards_capacity = capacity;
        }
    }
    pthread_mutex_unlock(&pd->arena_lock);
    pymic_block *block = room ? proc_arena_get(pd, span, PROC_PAGE) : NULL;
    if (!block)
        return NULL;
    uintptr_t guard = (uintptr_t)block->map + span - PROC_PAGE;
    block->ptr = (void *)((guard - nbytes) & ~(uintptr_t)(alignment - 1));
    pthread_mutex_lock(&pd->arena_lock);
    pd->guards[pd->nguards++] = guard;
    pthread_mutex_unlock(&pd->arena_lock);
    protect_guard(pd, guard, false);
    return block;
}

static void bounds_block_put(proc_device *pd, pymic_block *block)
{
    uintptr_t guard = (uintptr_t)block->map + block->map_bytes - PROC_PAGE;
    protect_guard(pd, guard, true);
    pthread_mutex_lock(&pd->arena_lock);
    for (size_t i = 0; i < pd->nguards; i++) {
        if (pd->guards[i] == guard) {
            pd->guards[i] = pd->guards[--pd->nguards];
            break;
        }
    }
    pthread_mutex_unlock(&pd->arena_lock);
}

static pymic_block *proc_block_get(pymic_device *device, size_t nbytes, size_t alignment)
{
    proc_device *pd = state_of(device);
    if (!pd->base)
        return NULL;
    if (pymic_global.check_bounds)
        return bounds_block_get(pd, nbytes, alignment);
    return proc_arena_get(pd, nbytes, alignment);
}

static void proc_block_put(pymic_device *device, pymic_block *block)
{
    proc_device *pd = state_of(device);
    if (pymic_global.check_bounds && pd->base)
        bounds_block_put(pd, block);
    proc_arena_put(pd, block);
}

static void proc_trim(pymic_device *device)
{
    (void)device; /* nothing is cached apart from the arena itself */
}

/* -------------------------------------------------------------- streams */

/* With control_lock held: have the device process serve mailbox `index`. */
static int start_serving(proc_device *pd, int index)
{
    if (atomic_load(&pd->device->lost))
        return PYMIC_ERR_DEVICE_LOST;
    proc_mailbox *control = &pd->control->mailbox[0];
    control->index = (uint32_t)index;
    control->handle = atomic_load(&pd->control->mailbox[index].done) & PROC_COUNT_MASK;
    return proc_control_call(pd, PROC_REQ_START);
}

/* The engine's worker loop, on a thread that knows it is a process
 * device's worker (see call_device). */
static void *worker_main(void *arg)
{
    pymic_stream *stream = arg;
    proc_stream *ps = stream->backend_worker;
    on_proc_worker = true;
    return ps->body(arg);
}

static int proc_start_worker(pymic_stream *stream, void *(*body)(void *))
{
    pymic_device *d = stream->device;
    proc_device *pd = state_of(d);
    proc_stream *ps = calloc(1, sizeof *ps);
    if (!ps)
        return pymic_fail(PYMIC_ERR_SYSTEM, "pymic_stream_create: device %d: out of host memory",
                          d->id);
    pthread_mutex_lock(&pd->control_lock);
    pthread_mutex_lock(&pd->lock);
    for (int i = 1; i < PROC_MAILBOXES && !ps->index; i++) {
        if (!pd->used[i]) {
            pd->used[i] = true;
            ps->index = i;
        }
    }
    pthread_mutex_unlock(&pd->lock);
    int status = PYMIC_OK, serving = PYMIC_ERR_DEVICE_LOST;
    if (!ps->index) {
        status = pymic_fail(PYMIC_ERR_SYSTEM,
                            "pymic_stream_create: device %d: a process device has at most %d "
                            "streams",
                            d->id, PROC_MAILBOXES - 1);
    } else if ((serving = start_serving(pd, ps->index)) == -1) {
        /* (A lost device is served again by its reset.) */
        status = pymic_fail(PYMIC_ERR_SYSTEM, "pymic_stream_create: device %d: %s", d->id,
                            pd->control->mailbox[0].text);
    }
    pthread_mutex_unlock(&pd->control_lock);
    if (status == PYMIC_OK) {
        stream->backend_worker = ps;
        ps->body = body;
        status = pymic_worker_start_pinned(stream, worker_main);
    }
    if (status != PYMIC_OK) {
        if (ps->index) {
            /* Only a served mailbox has a thread to stop. */
            if (pd->base && serving == PYMIC_OK)
                mailbox_call(&pd->control->mailbox[ps->index], PROC_REQ_QUIT, 0, 0);
            pthread_mutex_lock(&pd->lock);
            pd->used[ps->index] = false;
            pthread_mutex_unlock(&pd->lock);
        }
        stream->backend_worker = NULL;
        free(ps);
    }
    return status;
}

static void proc_worker_exit(pymic_stream *stream)
{
    proc_stream *ps = stream->backend_worker;
    proc_device *pd = state_of(stream->device);
    /* The device thread of this mailbox ends (nothing to do if lost). */
    if (pd->base)
        mailbox_call(&pd->control->mailbox[ps->index], PROC_REQ_QUIT, 0, 0);
    pthread_mutex_lock(&pd->lock);
    pd->used[ps->index] = false;
    pthread_mutex_unlock(&pd->lock);
    pymic_copy_team_destroy(ps->team);
    free(ps);
    stream->backend_worker = NULL;
}

/* ------------------------------------------------------------- commands */

static uint64_t running_seq(pymic_stream *stream)
{
    return atomic_load_explicit(&stream->completed, memory_order_relaxed) + 1;
}

/* Commands complete before the call returns (running_seq is `seq`). */
static int proc_copy(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    (void)seq;
    pymic_device *d = stream->device;
    if (atomic_load_explicit(&d->lost, memory_order_acquire)) {
        static const char *const names[] = {"h2d", "d2h", "d2d"};
        pymic_stream_fail(stream, running_seq(stream), "%s; command %llu (%s copy) was not run",
                          d->lost_why, (unsigned long long)running_seq(stream),
                          names[cmd->u.copy.dir]);
        return PYMIC_COMMAND_DONE;
    }
    proc_stream *ps = stream->backend_worker;
    if (cmd->u.copy.overlap)
        memmove(cmd->u.copy.dst, cmd->u.copy.src, cmd->u.copy.nbytes);
    else
        pymic_copy_parallel(&ps->team, d, cmd->u.copy.dst, cmd->u.copy.src, cmd->u.copy.nbytes);
    return PYMIC_COMMAND_DONE;
}

/* Any syncing thread may carry out a command itself: on a process device
 * that is a copy into the shared arena or a mailbox round trip, and the
 * kernel runs in the device process on the device's CPUs wherever the
 * caller runs (no OpenMP team on the caller, unlike the host device).
 * What it may claim inside a timed wait is stream.c's business (known
 * short kernels); call_device does not spin against a long one. */
static bool proc_caller_may_run(const pymic_device *device)
{
    (void)device;
    return true;
}

/* Hand the filled invoke request in `mb` to the device thread and wait
 * for its answer; false if the device process died.
 *
 * Who spins (docs/design.md, "Waiting on a process device"):
 *  - On the stream's host worker (nobody syncs yet, a timed wait leaves
 *    a kernel not known to be short to it, or PYMIC_CALLER_RUNS=0) the
 *    worker and the device thread both sleep: the syncing thread spins
 *    for the stream already and the worker spins for its next command,
 *    so a spinning device thread would be a third spinner; measured on 2
 *    cores, that made invoke + sync 20-40x slower.
 *  - On a syncing thread that runs the command itself (caller runs),
 *    nobody else spins (the worker naps): this thread spins for the
 *    answer and the device thread spins for the next request, one core
 *    each, so a round trip is two cache-line hand-offs and no system
 *    call.  A kernel whose last run here outlasted the spin window is
 *    waited for asleep at once, so this thread does not take a core from
 *    its OpenMP team; the device thread stops spinning while any kernel
 *    runs in the device process. */
static bool call_device(proc_stream *ps, proc_mailbox *mb, const struct pymic_kernel *kernel)
{
    if (on_proc_worker)
        return mailbox_call(mb, PROC_REQ_INVOKE, 0, 0);
    uint64_t window = spin_ns();
    uintptr_t bits = (uintptr_t)kernel;
    const struct pymic_kernel **slot = &ps->slow[((bits >> 6) ^ (bits >> 14)) % PROC_SLOW_SLOTS];
    bool slow = *slot == kernel;
    uint64_t start = window ? proc_now_ns() : 0;
    bool ran = mailbox_call(mb, PROC_REQ_INVOKE, slow ? 0 : window, window);
    if (window) {
        if (proc_now_ns() - start > window)
            *slot = kernel;
        else if (slow)
            *slot = NULL;
    }
    return ran;
}

static int proc_invoke(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    (void)seq;
    pymic_device *d = stream->device;
    proc_device *pd = state_of(d);
    proc_stream *ps = stream->backend_worker;
    const struct pymic_kernel *kernel = cmd->u.call.handle;
    if (!atomic_load_explicit(&d->lost, memory_order_acquire)) {
        proc_mailbox *mb = &pd->control->mailbox[ps->index];
        mb->nargs = cmd->nargs;
        mb->address = cmd->u.call.kernel_handle;
        memcpy(mb->scalars, cmd->scalars, (size_t)cmd->scalar_bytes);
        /* Scalars travel in the mailbox: they point into its copy.
         * Device and other addresses are the same in the device process
         * (the arena is mapped at the same address there). */
        for (int i = 0; i < cmd->nargs; i++)
            mb->args[i] = cmd->arg_kind[i] == PYMIC_ARG_SCALAR
                              ? (void *)(mb->scalars + cmd->arg_offset[i])
                              : cmd->args[i];
        atomic_store(&pd->running[ps->index], kernel);
        if (atomic_load_explicit(&pymic_global.kernel_timeout_ns, memory_order_relaxed))
            atomic_store(&pd->started_ns[ps->index], pymic_now_ns());
        bool ran = call_device(ps, mb, kernel);
        atomic_store(&pd->started_ns[ps->index], 0);
        atomic_store(&pd->running[ps->index], NULL);
        if (ran)
            return PYMIC_COMMAND_DONE;
        pymic_stream_fail(stream, running_seq(stream),
                          "%s; command %llu of this stream (kernel '%s') did not complete",
                          d->lost_why, (unsigned long long)running_seq(stream), kernel->name);
        return PYMIC_COMMAND_DONE;
    }
    pymic_stream_fail(stream, running_seq(stream),
                      "%s; command %llu (kernel '%s') was not run", d->lost_why,
                      (unsigned long long)running_seq(stream), kernel->name);
    return PYMIC_COMMAND_DONE;
}

/* ------------------------------------------------------------ libraries */

/* A library as the device process opened it, and in which process. */
typedef struct proc_library {
    uint64_t handle;
    unsigned generation;
} proc_library;

static void lost_reason(pymic_device *d, char *why, size_t len)
{
    snprintf(why, len, "%s", d->lost_why);
}

/* The device process opens the host's descriptor through
 * /proc/<host>/fd/N (by the path only if that is refused) and loads it
 * only if it is the same file (device and inode) as `fd`: it runs the
 * file the host opened and checked, whatever the path names meanwhile.
 * With `by_path` it loads it as the host backend does: by the path if
 * the loader's object for it is that file, else through its descriptor. */
static void *proc_library_open(pymic_device *device, int fd, const char *path, bool by_path,
                               char *why, size_t len)
{
    proc_device *pd = state_of(device);
    proc_library *lib = malloc(sizeof *lib);
    struct stat st;
    if (!lib || fstat(fd, &st) != 0) {
        snprintf(why, len, "%s", lib ? strerror(errno) : "out of host memory");
        free(lib);
        close(fd);
        return NULL;
    }
    /* The fallback is by name: relative paths are resolved here, as the
     * device process's directory was fixed when it started.  An absolute
     * one (always, with `by_path`) is kept as it is: `$ORIGIN` is the
     * directory of the name loaded, links and all, as on the host. */
    char resolved[PATH_MAX];
    const char *sent = path[0] == '/' || !realpath(path, resolved) ? path : resolved;
    pthread_mutex_lock(&pd->control_lock);
    proc_mailbox *mb = &pd->control->mailbox[0];
    snprintf(mb->text, PROC_TEXT_MAX, "%s", sent);
    mb->index = (uint32_t)fd;
    mb->handle = (uint64_t)st.st_dev;
    mb->address = (uint64_t)st.st_ino;
    mb->nargs = by_path;
    int status = proc_control_call(pd, PROC_REQ_LOAD);
    if (status == PYMIC_OK) {
        lib->handle = mb->handle;
        lib->generation = atomic_load(&device->generation);
    } else if (status == PYMIC_ERR_DEVICE_LOST) {
        lost_reason(device, why, len);
    } else {
        snprintf(why, len, "%s", mb->text);
    }
    pthread_mutex_unlock(&pd->control_lock);
    close(fd); /* the device process holds its own descriptor now */
    if (status != PYMIC_OK) {
        free(lib);
        return NULL;
    }
    return lib;
}

/* The handle is the kernel's address in the device process. */
static uint64_t proc_kernel_find(pymic_device *device, void *handle, const char *name,
                                 char *why, size_t len)
{
    proc_device *pd = state_of(device);
    proc_library *lib = handle;
    uint64_t address = 0;
    pthread_mutex_lock(&pd->control_lock);
    proc_mailbox *mb = &pd->control->mailbox[0];
    mb->handle = lib->handle;
    snprintf(mb->text, PROC_TEXT_MAX, "%s", name);
    int status = proc_control_call(pd, PROC_REQ_FIND);
    if (status == PYMIC_OK)
        address = mb->address;
    else if (status == PYMIC_ERR_DEVICE_LOST)
        lost_reason(device, why, len);
    else
        snprintf(why, len, "%s", mb->text);
    pthread_mutex_unlock(&pd->control_lock);
    return address;
}

static void proc_library_close(pymic_device *device, void *handle)
{
    proc_device *pd = state_of(device);
    proc_library *lib = handle;
    /* A library of an earlier device process went with that process. */
    pthread_mutex_lock(&pd->control_lock);
    if (lib->generation == atomic_load(&device->generation) && !atomic_load(&device->lost)) {
        pd->control->mailbox[0].handle = lib->handle;
        proc_control_call(pd, PROC_REQ_CLOSE);
    }
    pthread_mutex_unlock(&pd->control_lock);
    free(lib);
}

/* --------------------------------------------------------------- health */

static int proc_reset(pymic_device *device)
{
    proc_device *pd = state_of(device);
    if (!pd->base)
        return pymic_fail(PYMIC_ERR_DEVICE_LOST, "pymic_device_reset: %s", device->lost_why);
    pthread_mutex_lock(&pd->control_lock);
    proc_monitor_respawn(pd);
    /* A fresh start for the memory too: free device memory holds no pages
     * (live allocations keep theirs, with their contents). */
    proc_arena_return_free(pd);
    atomic_fetch_add(&device->generation, 1);
    int status = proc_control_call(pd, PROC_REQ_PING);
    for (int i = 1; i < PROC_MAILBOXES && status == PYMIC_OK; i++) {
        pthread_mutex_lock(&pd->lock);
        bool used = pd->used[i];
        pthread_mutex_unlock(&pd->lock);
        if (used)
            status = start_serving(pd, i);
    }
    /* Guard pages of live blocks, in the new process. */
    pthread_mutex_lock(&pd->arena_lock);
    for (size_t i = 0; i < pd->nguards && status == PYMIC_OK; i++) {
        proc_mailbox *mb = &pd->control->mailbox[0];
        mb->handle = pd->guards[i];
        mb->index = 0;
        status = proc_control_call(pd, PROC_REQ_PROTECT);
    }
    pthread_mutex_unlock(&pd->arena_lock);
    pthread_mutex_unlock(&pd->control_lock);
    if (status == PYMIC_ERR_DEVICE_LOST)
        return pymic_fail(status, "pymic_device_reset: %s", device->lost_why);
    if (status != PYMIC_OK)
        return pymic_fail(PYMIC_ERR_SYSTEM, "pymic_device_reset: device %d: %s", device->id,
                          pd->control->mailbox[0].text);
    pymic_log(1, "device %d: reset", device->id);
    return PYMIC_OK;
}

/* ----------------------------------------------------------------- fork */

static void proc_prefork(pymic_device *device)
{
    proc_device *pd = state_of(device);
    pthread_mutex_lock(&pd->control_lock);
    pthread_mutex_lock(&pd->lock);
    pthread_mutex_lock(&pd->arena_lock);
}

static void proc_postfork_parent(pymic_device *device)
{
    proc_device *pd = state_of(device);
    pthread_mutex_unlock(&pd->arena_lock);
    pthread_mutex_unlock(&pd->lock);
    pthread_mutex_unlock(&pd->control_lock);
}

static void proc_postfork_child(pymic_device *device)
{
    proc_device *pd = state_of(device);
    pthread_mutex_init(&pd->arena_lock, NULL);
    pthread_mutex_init(&pd->lock, NULL);
    pthread_mutex_init(&pd->control_lock, NULL);
    pthread_cond_init(&pd->cond, NULL);
    /* The arena was not inherited (MADV_DONTFORK) and the device process
     * is the parent's: nothing of this device works here. */
    pd->base = NULL;
    if (!atomic_load(&device->lost))
        pymic_device_mark_lost(device,
                               "device %d lost: its device process belongs to the parent of "
                               "this fork()ed process",
                               device->id);
}

const pymic_backend_ops pymic_proc_backend = {
    .abi_version = PYMIC_BACKEND_ABI,
    .kind = "proc",
    .host_addressable = true, /* the arena is mapped at the same address here */
    .cpu_specs = true,
    .caller_may_run = proc_caller_may_run,
    .open = proc_open,
    .block_get = proc_block_get,
    .block_put = proc_block_put,
    .trim = proc_trim,
    .bounds_arm = pymic_bounds_arm,
    .bounds_after_invoke = pymic_bounds_after_invoke,
    .start_worker = proc_start_worker,
    .worker_exit = proc_worker_exit,
    .copy = proc_copy,
    .invoke = proc_invoke,
    .library_open = proc_library_open,
    .kernel_find = proc_kernel_find,
    .library_close = proc_library_close,
    .reset = proc_reset,
    .prefork = proc_prefork,
    .postfork_parent = proc_postfork_parent,
    .postfork_child = proc_postfork_child,
};
