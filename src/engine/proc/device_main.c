/*
 * device_main.c -- pymic-device, the process that runs one "proc" device.
 *
 * Started by libpymic's monitor thread (proc/monitor.c) as
 *   pymic-device FD ADDRESS BYTES PARENT_PID CPUS
 * with the arena's memfd as descriptor FD.  It closes every other
 * descriptor it may have inherited, asks to be killed when its parent
 * goes (and checks the parent did not go already), pins itself to the
 * device's CPUs, maps the arena at exactly ADDRESS (MAP_FIXED_NOREPLACE:
 * never over something of its own) and serves the control mailbox on its
 * main thread; each stream's mailbox is served by a thread of its own,
 * started by a START request.  Kernels run on those threads, so a kernel
 * that faults, aborts or exits takes this process down, not the host.
 *
 * The monitor starts it in a process group of its own: signals a terminal
 * sends to the foreground group (Ctrl-C, Ctrl-\, Ctrl-Z) never reach it,
 * and whatever children kernels leave behind are in that group too.  The
 * group dies with this process: the monitor kills it when it sees this
 * process end (reset included), and when the host dies first, its
 * death signal (SIGHUP here) makes this process kill the group.  A fork()
 * inside a kernel (or a library constructor) returns in the child too:
 * that copy leaves as soon as the user code returns instead of serving
 * the mailboxes.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "../../mpi/device_launch.h"
#include "../host/host.h"
#include "../invoke_call.h"
#include "shared.h"

#if PROC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

static proc_control *control;
static int device_ncpus = 1;
static cpu_set_t device_cpus; /* this process's CPUs, fixed at start */
static pid_t host_pid; /* the parent: libpymic's process */

/* The host orders the requests of different mailboxes (a program posts
 * after the answers it waited for, on any stream); ThreadSanitizer sees
 * only this process, so it is told: each request is taken with an acquire
 * and answered with a release of one object.  Kernels that really run at
 * the same time on two streams stay unordered. */
#if PROC_TSAN
static char host_order;

static void took_request(void)
{
    __tsan_acquire(&host_order);
}

static void answering(void)
{
    __tsan_release(&host_order);
}
#else
static void took_request(void) {}
static void answering(void) {}
#endif

static pid_t device_pid;
/* A private page the kernel wipes in a fork()ed child (MADV_WIPEONFORK,
 * whichever system call forked): nonzero only in the device process. */
static volatile unsigned char *original_mark;

static void mark_original(void)
{
    void *page = mmap(NULL, PROC_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (page == MAP_FAILED)
        return;
    if (madvise(page, PROC_PAGE, MADV_WIPEONFORK) != 0) {
        munmap(page, PROC_PAGE);
        return;
    }
    original_mark = page;
    *original_mark = 1;
}

/* After user code ran (a kernel, a library's constructors): a fork()ed
 * copy of this thread must never serve, or the requests it sees would run
 * twice.  Reading the mark costs nothing; getpid (a system call, 0.6 us on
 * a VM) is only the fallback of kernels without MADV_WIPEONFORK. */
static void leave_if_forked_copy(void)
{
    bool copy = original_mark ? *original_mark == 0 : getpid() != device_pid;
    if (copy)
        _exit(0);
}

static void call_kernel(proc_mailbox *mb)
{
    pymic_kernel_fn fn;
    void *address = (void *)(uintptr_t)mb->address;
    memcpy(&fn, &address, sizeof fn);
    void *const *a = mb->args;
    switch (mb->nargs) {
        PYMIC_CALL_CASES
    default:
        break; /* checked by the host */
    }
}

/* About to spin for the next request while the host side spins for it on
 * this thread's CPU (the scheduler put the two there, often because
 * another program keeps the other CPUs busy): the two would only take
 * turns on it.  Move to the device's other CPUs for the wait, as MPI
 * binds two ranks to two cores; true if this thread moved. */
static bool step_aside(const proc_mailbox *mb)
{
    int host = atomic_load_explicit(&mb->host_cpu, memory_order_relaxed);
    if (device_ncpus < 2 || host < 0 || host >= CPU_SETSIZE || host != sched_getcpu() ||
        !CPU_ISSET(host, &device_cpus))
        return false;
    cpu_set_t others = device_cpus;
    CPU_CLR(host, &others);
    return sched_setaffinity(0, sizeof others, &others) == 0;
}

/* Back to all the device's CPUs, where it stays until the scheduler moves
 * it: a kernel's OpenMP team takes its threads' CPUs from this thread. */
static void step_back(void)
{
    sched_setaffinity(0, sizeof device_cpus, &device_cpus);
}

/* One stream's mailbox: run each posted request, answer it. */
static void *serve_stream(void *arg)
{
    proc_mailbox *mb = arg;
    uint32_t seen = (uint32_t)mb->handle;
    omp_set_num_threads(device_ncpus);
    uint64_t spin_ns = 0; /* the first request is awaited asleep */
    for (;;) {
        bool aside = spin_ns && step_aside(mb);
        seen = proc_await_change(&mb->posted, seen, &mb->device_sleeping, spin_ns,
                                 &control->kernels_running, &mb->device_cpu, &mb->host_cpu);
        if (aside)
            step_back();
        took_request();
        proc_note_cpu(&mb->device_cpu);
        uint32_t request = mb->request;
        /* Read before answering: the host may post the next request (and
         * its window) as soon as `done` moves. */
        spin_ns = mb->spin_ns;
        if (request == PROC_REQ_INVOKE) {
            atomic_fetch_add_explicit(&control->kernels_running, 1, memory_order_relaxed);
            call_kernel(mb);
            leave_if_forked_copy(); /* a fork()ed copy must not count down */
            atomic_fetch_sub_explicit(&control->kernels_running, 1, memory_order_relaxed);
        }
        answering();
        proc_store_and_wake(&mb->done, seen & PROC_COUNT_MASK, &mb->host_sleeping);
        if (request == PROC_REQ_QUIT)
            return NULL;
    }
}

/* The file the host opened (and may have checked) as its descriptor
 * mb->index: reached through /proc/<host>/fd/N, else by the path in
 * mb->text, and loaded only if it is the host's file (mb->handle, device;
 * mb->address, inode) -- never a file put at that path since.  With
 * mb->nargs set, loaded by that path when the loader's object for it is
 * that file (host/kernel.c checks), so `$ORIGIN` names its directory. */
static void *load_host_file(proc_mailbox *mb)
{
    char via[64];
    snprintf(via, sizeof via, "/proc/%ld/fd/%u", (long)host_pid, mb->index);
    int fd = open(via, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fd = open(mb->text, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(mb->text, PROC_TEXT_MAX, "the device process cannot open it: %s",
                 strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_dev != mb->handle ||
        (uint64_t)st.st_ino != mb->address) {
        close(fd);
        snprintf(mb->text, PROC_TEXT_MAX, "the file changed between the host's open and the "
                                          "device process's (another file is at that path)");
        return NULL;
    }
    char path[PROC_TEXT_MAX];
    memcpy(path, mb->text, sizeof path); /* mb->text takes the reason */
    return pymic_host_library_open(NULL, fd, path, mb->nargs != 0, mb->text, PROC_TEXT_MAX);
}

static void answer_control(proc_mailbox *mb)
{
    mb->status = 0;
    switch (mb->request) {
    case PROC_REQ_LOAD: {
        mb->text[PROC_TEXT_MAX - 1] = '\0';
        void *handle = load_host_file(mb);
        mb->handle = (uint64_t)(uintptr_t)handle;
        mb->status = handle ? 0 : -1;
        break;
    }
    case PROC_REQ_FIND: {
        mb->text[PROC_TEXT_MAX - 1] = '\0';
        char name[PROC_TEXT_MAX];
        memcpy(name, mb->text, sizeof name);
        void *address = pymic_host_kernel_find(NULL, (void *)(uintptr_t)mb->handle, name,
                                               mb->text, PROC_TEXT_MAX);
        mb->address = (uint64_t)(uintptr_t)address;
        mb->status = address ? 0 : -1;
        break;
    }
    case PROC_REQ_PROTECT:
        mb->status = mprotect((void *)(uintptr_t)mb->handle, PROC_PAGE,
                              mb->index ? PROT_READ | PROT_WRITE : PROT_NONE);
        break;
    case PROC_REQ_CLOSE:
        pymic_host_library_close(NULL, (void *)(uintptr_t)mb->handle);
        break;
    case PROC_REQ_START: {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        proc_mailbox *served = &control->mailbox[mb->index % PROC_MAILBOXES];
        served->handle = mb->handle;
        int rc = pthread_create(&thread, &attr, serve_stream, served);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            snprintf(mb->text, PROC_TEXT_MAX, "cannot start a thread: %s", strerror(rc));
            mb->status = -1;
        }
        break;
    }
    default:
        break;
    }
}

/* A fault's address, for the host's message (a write into a guard page
 * names the allocation); then the default action ends the process with
 * the same signal, as if no handler had been there. */
static void note_fault(int signal, siginfo_t *info, void *context)
{
    (void)signal;
    (void)context;
    atomic_store(&control->fault_address, (uint64_t)(uintptr_t)info->si_addr);
}

static void catch_faults(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = note_fault;
    action.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, NULL);
    sigaction(SIGBUS, &action, NULL);
}

/* The host died (the death signal): take the process group -- this
 * process and every child a kernel left behind -- with it.  A child that
 * inherited the handler and gets the signal just dies of it. */
static void parent_gone(int signal)
{
    if (getpid() == device_pid)
        kill(0, SIGKILL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(signal, &dfl, NULL);
    raise(signal);
}

static void set_signals(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_handler = parent_gone;
    sigaction(SIGHUP, &action, NULL);
    /* A background group's terminal I/O: a kernel's write goes through
     * (even with `stty tostop`), a read fails with EIO, instead of
     * stopping this process for good. */
    action.sa_handler = SIG_IGN;
    sigaction(SIGTTOU, &action, NULL);
    sigaction(SIGTTIN, &action, NULL);
}

static bool parse_cpus(const char *text, cpu_set_t *set, int *count)
{
    CPU_ZERO(set);
    *count = 0;
    for (const char *p = text; *p;) {
        char *end;
        long cpu = strtol(p, &end, 10);
        if (end == p || cpu < 0 || cpu >= CPU_SETSIZE)
            return false;
        CPU_SET((int)cpu, set);
        ++*count;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return false;
    }
    return *count > 0;
}

int main(int argc, char **argv)
{
    /* Started by an MPI launcher: an MPI device (src/mpi/). */
    if (pymic_device_started_by_mpi(argc))
        return pymic_device_run_mpi(argc, argv);
    if (argc != 6)
        return PROC_EXIT_USAGE;
    int fd = atoi(argv[1]);
    uintptr_t address = (uintptr_t)strtoull(argv[2], NULL, 16);
    size_t bytes = (size_t)strtoull(argv[3], NULL, 10);
    pid_t parent = (pid_t)atol(argv[4]);
    host_pid = parent;
    /* Only the arena's descriptor (and stdin/out/err) stay open. */
    for (int other = 3; other < fd; other++)
        close(other);
    syscall(SYS_close_range, (unsigned)fd + 1, ~0u, 0);
    /* kill(0, ...) below must only ever reach this process's own group. */
    device_pid = getpid();
    if (getpgrp() != device_pid)
        return PROC_EXIT_GROUP;
    /* Die with the parent; if it died before this line, the signal was
     * never sent: check by hand. */
    set_signals();
    prctl(PR_SET_PDEATHSIG, SIGHUP);
    if (getppid() != parent)
        return PROC_EXIT_PARENT;
    cpu_set_t cpus;
    if (!parse_cpus(argv[5], &cpus, &device_ncpus) || sched_setaffinity(0, sizeof cpus, &cpus))
        return PROC_EXIT_AFFINITY;
    device_cpus = cpus;
    void *at = mmap((void *)address, bytes, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_NORESERVE, fd, 0);
    if (at != (void *)address) {
        fprintf(stderr, "pymic-device: cannot map the device memory at %p: %s\n",
                (void *)address, at == MAP_FAILED ? strerror(errno) : "address taken");
        return PROC_EXIT_MAP;
    }
    close(fd);
    control = at;
    mark_original();
    mprotect((char *)at + PROC_CONTROL_BYTES, PROC_PAGE, PROT_NONE);
    catch_faults();
    omp_set_num_threads(device_ncpus);

    proc_mailbox *mb = &control->mailbox[0];
    uint32_t seen = atomic_load(&mb->done);
    for (;;) {
        /* Control requests are rare (start-up, loads, new streams): the
         * main thread never spins for them. */
        seen = proc_await_change(&mb->posted, seen, &mb->device_sleeping, 0, NULL,
                                 &mb->device_cpu, &mb->host_cpu);
        took_request();
        answer_control(mb);
        leave_if_forked_copy();
        answering();
        proc_store_and_wake(&mb->done, seen & PROC_COUNT_MASK, &mb->host_sleeping);
    }
}
