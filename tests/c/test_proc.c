/*
 * test_proc.c -- the process device (run with PYMIC_DEVICES="proc;host"):
 * device 0 runs kernels in a device process, device 1 in this process.
 *
 * A kernel that segfaults, aborts or exits marks device 0 lost: the
 * pending and every later command fails with PYMIC_ERR_DEVICE_LOST naming
 * the device, the kernel and the cause, this process goes on, device 1 is
 * untouched, frees still work, and pymic_device_reset brings device 0
 * back.  With PYMIC_KERNEL_TIMEOUT set (the "proc-watchdog" run) an
 * endless kernel is killed the same way.  The device process inherits no
 * descriptor but its memory's, and dies with its parent.  The signals a
 * terminal sends to the program's process group do not reach it; a kernel
 * that fork()s does not make later kernels run twice, and the children
 * kernels leave behind end with the device process (reset, exit, or the
 * program killed).
 *
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *kernels_path;

static pymic_kernel *find(pymic_library *lib, const char *name)
{
    pymic_kernel *k = NULL;
    CHECK_OK(pymic_kernel_find(lib, name, &k));
    return k;
}

static void test_basics(void)
{
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(strcmp(info.kind, "proc") == 0);
    CHECK(strncmp(info.name, "proc:", 5) == 0);
    CHECK_OK(pymic_device_get_info(1, &info));
    CHECK(strcmp(info.kind, "host") == 0);
    CHECK(pymic_device_lost(0, NULL, 0) == 0);

    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    pymic_kernel *double_it = find(lib, "double_it");
    CHECK_STATUS(pymic_kernel_find(lib, "no_such_kernel", &double_it), PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK_MESSAGE("no_such_kernel");
    double_it = find(lib, "double_it");

    enum { N = 1000 };
    static double in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    void *din, *dout;
    CHECK_OK(pymic_mem_alloc(0, sizeof in, 0, &din));
    CHECK_OK(pymic_mem_alloc(0, sizeof out, 0, &dout));
    uintptr_t seen;
    CHECK_OK(pymic_mem_translate(0, din, 8, &seen));
    CHECK(seen == (uintptr_t)din + 8); /* the same address in both processes */
    int64_t n = N;
    pymic_arg args[3] = {{din, 0}, {dout, 0}, {&n, sizeof n}};
    CHECK_OK(pymic_memcpy_h2d(s, din, 0, in, sizeof in));
    CHECK_OK(pymic_invoke(s, double_it, 3, args));
    CHECK_OK(pymic_memcpy_d2d(s, din, 0, dout, 0, sizeof out));
    CHECK_OK(pymic_invoke(s, double_it, 3, args));
    CHECK_OK(pymic_memcpy_d2h(s, out, dout, 0, sizeof out));
    CHECK_OK(pymic_stream_sync(s));
    int wrong = 0;
    for (int i = 0; i < N; i++)
        wrong += out[i] != 4.0 * i;
    CHECK(wrong == 0);

    /* Many streams at once, each with its own mailbox and device thread. */
    pymic_stream *more[8];
    int64_t counters[8] = {0};
    void *dc;
    CHECK_OK(pymic_mem_alloc(0, sizeof counters, 0, &dc));
    CHECK_OK(pymic_memcpy_h2d(s, dc, 0, counters, sizeof counters));
    CHECK_OK(pymic_stream_sync(s));
    pymic_kernel *increment = find(lib, "increment");
    for (int i = 0; i < 8; i++) {
        CHECK_OK(pymic_stream_create(0, &more[i]));
        pymic_arg a = {(int64_t *)dc + i, 0};
        for (int r = 0; r <= i; r++)
            CHECK_OK(pymic_invoke(more[i], increment, 1, &a));
    }
    CHECK_OK(pymic_device_sync(0));
    CHECK_OK(pymic_memcpy_d2h(s, counters, dc, 0, sizeof counters));
    CHECK_OK(pymic_stream_sync(s));
    for (int i = 0; i < 8; i++) {
        CHECK(counters[i] == i + 1);
        CHECK_OK(pymic_stream_destroy(more[i]));
    }
    CHECK_OK(pymic_mem_free(s, dc));
    CHECK_OK(pymic_mem_free(s, din));
    CHECK_OK(pymic_mem_free(s, dout));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(s));
}

/* Run `crasher` on device 0; expect the loss to be reported with `cause`,
 * then reset and check the device works again. */
static void test_fault(const char *crasher, const char *cause)
{
    pymic_stream *s, *other, *host;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_stream_create(0, &other));
    CHECK_OK(pymic_stream_create(1, &host));
    pymic_library *lib, *hostlib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    CHECK_OK(pymic_library_load(1, kernels_path, &hostlib));
    pymic_kernel *increment = find(lib, "increment");
    void *counter;
    int64_t value = 41;
    CHECK_OK(pymic_mem_alloc(0, sizeof value, 0, &counter));
    CHECK_OK(pymic_memcpy_h2d(s, counter, 0, &value, sizeof value));
    pymic_arg a = {counter, 0};
    CHECK_OK(pymic_invoke(s, increment, 1, &a));
    CHECK_OK(pymic_stream_sync(s));

    /* The fault, then a command queued behind it. */
    pymic_event *before, *after;
    CHECK_OK(pymic_event_create(&before));
    CHECK_OK(pymic_event_create(&after));
    CHECK_OK(pymic_event_record(before, s));
    CHECK_OK(pymic_invoke(s, find(lib, crasher), 0, NULL));
    CHECK_OK(pymic_invoke(s, increment, 1, &a));
    CHECK_OK(pymic_event_record(after, s));
    char expected[128];
    snprintf(expected, sizeof expected, "device 0 lost: kernel '%s' %s", crasher, cause);
    /* A wait on an event recorded after the fault fails too; one recorded
     * before it does not. */
    CHECK_STATUS(pymic_event_sync(after), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("sync of an event");
    CHECK_MESSAGE(expected);
    CHECK_STATUS(pymic_event_query(after), PYMIC_ERR_DEVICE_LOST);
    CHECK_OK(pymic_event_sync(before));
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE(expected);
    CHECK_MESSAGE("did not complete");
    CHECK_OK(pymic_event_destroy(before));
    CHECK_OK(pymic_event_destroy(after));
    char why[256];
    CHECK(pymic_device_lost(0, why, sizeof why) == 1);
    CHECK(strstr(why, expected) != NULL);
    /* Reported once; every later command fails again. */
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_invoke(other, increment, 1, &a));
    CHECK_STATUS(pymic_stream_wait_seq(other, pymic_stream_last_enqueued(other)),
                 PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("was not run");
    CHECK_OK(pymic_memcpy_d2h(other, &value, counter, 0, sizeof value));
    CHECK_STATUS(pymic_device_sync(0), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("d2h copy");
    pymic_library *refused;
    CHECK_STATUS(pymic_library_load(0, kernels_path, &refused), PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE(expected);

    /* The host device is another matter. */
    int64_t host_counter = 1;
    pymic_arg ha = {&host_counter, 0};
    (void)ha;
    void *hc;
    CHECK_OK(pymic_mem_alloc(1, sizeof host_counter, 0, &hc));
    pymic_arg hd = {hc, 0};
    CHECK_OK(pymic_memcpy_h2d(host, hc, 0, &host_counter, sizeof host_counter));
    CHECK_OK(pymic_invoke(host, find(hostlib, "increment"), 1, &hd));
    CHECK_OK(pymic_memcpy_d2h(host, &host_counter, hc, 0, sizeof host_counter));
    CHECK_OK(pymic_stream_sync(host));
    CHECK(host_counter == 2);
    CHECK_OK(pymic_mem_free(host, hc));

    /* Reset: the same streams work again, libraries are loaded again,
     * memory allocated before is still there. */
    CHECK_OK(pymic_device_reset(0));
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
    CHECK_STATUS(pymic_invoke(s, increment, 1, &a), PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE("load its library again");
    CHECK_STATUS(pymic_kernel_find(lib, "empty_kernel", &increment), PYMIC_ERR_LIBRARY);
    pymic_library *again;
    CHECK_OK(pymic_library_load(0, kernels_path, &again));
    increment = find(again, "increment");
    CHECK_OK(pymic_invoke(s, increment, 1, &a));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_invoke(other, increment, 1, &a));
    CHECK_OK(pymic_stream_sync(other));
    CHECK_OK(pymic_memcpy_d2h(s, &value, counter, 0, sizeof value));
    CHECK_OK(pymic_device_sync(0));
    CHECK(value == 44);
    CHECK_OK(pymic_mem_free(s, counter));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_library_unload(again));
    CHECK_OK(pymic_library_unload(hostlib));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_stream_destroy(other));
    CHECK_OK(pymic_stream_destroy(host));
}

/* The pid of this process's child running pymic-device, or 0. */
static pid_t device_process(void)
{
    DIR *dir = opendir("/proc");
    pid_t found = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir)) && !found) {
        char path[300], stat[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long pid, ppid;
        char comm[64], state;
        if (fgets(stat, sizeof stat, f) &&
            sscanf(stat, "%ld (%63[^)]) %c %ld", &pid, comm, &state, &ppid) == 4 &&
            ppid == (long)getpid() && strcmp(comm, "pymic-device") == 0)
            found = (pid_t)pid;
        fclose(f);
    }
    if (dir)
        closedir(dir);
    return found;
}

/* The device process `pid` has ended (gone, or a zombie). */
static bool ended(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    bool zombie = false;
    if (fgets(stat, sizeof stat, f)) {
        const char *close_paren = strrchr(stat, ')');
        zombie = close_paren && (close_paren[2] == 'Z' || close_paren[2] == 'X');
    }
    fclose(f);
    return zombie;
}

/* The device process killed from outside while idle: the next command
 * fails naming the cause, a reset brings the device back. */
static void test_killed_from_outside(void)
{
    pid_t device = device_process();
    CHECK(device > 0);
    if (device <= 0)
        return;
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK(kill(device, SIGKILL) == 0);
    /* Until the monitor has seen the death, commands may still be taken. */
    for (int i = 0; i < 1000 && !pymic_device_lost(0, NULL, 0); i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    char why[256];
    CHECK(pymic_device_lost(0, why, sizeof why) == 1);
    CHECK(strstr(why, "device 0 lost: the device process was killed by SIGKILL") != NULL);
    int64_t value = 1;
    void *p;
    CHECK_OK(pymic_mem_alloc(0, sizeof value, 0, &p));
    CHECK_OK(pymic_memcpy_h2d(s, p, 0, &value, sizeof value));
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("killed by SIGKILL");
    CHECK_OK(pymic_device_reset(0));
    CHECK_OK(pymic_memcpy_h2d(s, p, 0, &value, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_mem_free(s, p));
    CHECK_OK(pymic_stream_destroy(s));
}

/* reset() stops a kernel that never ends: that is what the program asked
 * for, so the next sync reports nothing (before, the first command after
 * the reset raised "was stopped by pymic_device_reset" although it ran). */
static void test_reset_forgets_what_it_stopped(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    pymic_kernel *wait;
    CHECK_OK(pymic_kernel_find(lib, "announce_then_wait", &wait));
    _Atomic int64_t *flags; /* device memory: mapped in this process too */
    CHECK_OK(pymic_mem_alloc(0, 2 * sizeof *flags, 0, (void **)&flags));
    atomic_store(&flags[0], 0);
    atomic_store(&flags[1], 0);
    pymic_arg args[2] = {{(void *)&flags[0], 0}, {(void *)&flags[1], 0}};
    CHECK_OK(pymic_invoke(s, wait, 2, args));
    while (atomic_load(&flags[0]) == 0) /* it runs: only a reset ends it */
        nanosleep(&(struct timespec){0, 100000}, NULL);
    CHECK_OK(pymic_device_reset(0));
    pymic_library *again;
    CHECK_OK(pymic_library_load(0, kernels_path, &again));
    pymic_kernel *increment;
    CHECK_OK(pymic_kernel_find(again, "increment", &increment));
    int64_t zero = 0, got = -1;
    CHECK_OK(pymic_memcpy_h2d(s, (void *)&flags[0], 0, &zero, sizeof zero));
    pymic_arg counter = {(void *)&flags[0], 0};
    CHECK_OK(pymic_invoke(s, increment, 1, &counter));
    CHECK_OK(pymic_memcpy_d2h(s, &got, (void *)&flags[0], 0, sizeof got));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(got == 1);
    CHECK_OK(pymic_mem_free(s, (void *)flags));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_library_unload(again));
    CHECK_OK(pymic_stream_destroy(s));
}

/* Run in a fresh process (this test executed again, see main): start the
 * engine with an inheritable descriptor open (`fd`, the report pipe), and
 * report the device process's pid and its open descriptors; then die by
 * SIGKILL, which runs no clean-up at all. */
static int child_side(int fd)
{
    CHECK_OK(pymic_init());
    pid_t device = device_process();
    char line[512];
    int used = snprintf(line, sizeof line, "%ld", (long)device);
    char dir_path[64];
    snprintf(dir_path, sizeof dir_path, "/proc/%ld/fd", (long)device);
    DIR *dir = opendir(dir_path);
    struct dirent *e;
    while (dir && (e = readdir(dir)))
        if (e->d_name[0] != '.')
            used += snprintf(line + used, sizeof line - (size_t)used, " %s", e->d_name);
    if (dir)
        closedir(dir);
    used += snprintf(line + used, sizeof line - (size_t)used, "\n");
    if (write(fd, line, (size_t)used) != used)
        return 1;
    raise(SIGKILL);
    return 1;
}

static void test_descriptors_and_parent_death(const char *self)
{
    int report[2];
    CHECK(pipe(report) == 0); /* inheritable on purpose */
    pid_t child = fork();
    if (child == 0) {
        close(report[0]);
        char fd_arg[16];
        snprintf(fd_arg, sizeof fd_arg, "%d", report[1]);
        setenv("PYMIC_DEVICES", "proc", 1);
        execl(self, self, kernels_path, "--child", fd_arg, (char *)NULL);
        _exit(127);
    }
    close(report[1]);
    char line[512] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof line - 1 && (r = read(report[0], line + got, sizeof line - 1 - got)) > 0)
        got += (size_t)r;
    close(report[0]);
    int status;
    waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    long device = 0;
    char fds[256] = {0};
    CHECK(sscanf(line, "%ld %255[^\n]", &device, fds) >= 1);
    CHECK(device > 0);
    /* stdin, stdout, stderr and nothing else: not the report pipe, not
     * the memory's descriptor (closed once mapped). */
    CHECK(strcmp(fds, "0 1 2") == 0);
    if (strcmp(fds, "0 1 2") != 0)
        fprintf(stderr, "device process descriptors: %s\n", fds);
    /* Its parent was killed: the device process goes too (bounded wait,
     * only a failure takes long). */
    bool gone = false;
    for (int i = 0; i < 1000 && device > 0 && !(gone = ended((pid_t)device)); i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    CHECK(gone);
}

/* A descriptor that becomes readable when process `pid` (any process,
 * not only a child) ends, or -1. */
static int watch_process(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Wait for the end `watch` announces (at most a minute: only a failure
 * takes that long); closes it. */
static bool ended_in_time(int watch)
{
    struct pollfd p = {.fd = watch, .events = POLLIN};
    bool ended_now = watch >= 0 && poll(&p, 1, 60000) == 1;
    if (watch >= 0)
        close(watch);
    return ended_now;
}

/* Run fork_sleeper on device 0: the pid of the child it left. */
static pid_t leave_a_child(pymic_stream *s, pymic_library *lib)
{
    int64_t pid = -1;
    void *dpid;
    CHECK_OK(pymic_mem_alloc(0, sizeof pid, 0, &dpid));
    pymic_arg a = {dpid, 0};
    CHECK_OK(pymic_invoke(s, find(lib, "fork_sleeper"), 1, &a));
    CHECK_OK(pymic_memcpy_d2h(s, &pid, dpid, 0, sizeof pid));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_mem_free(s, dpid));
    CHECK(pid > 0);
    return (pid_t)pid;
}

/* A kernel that fork()s and returns in both processes: the copy must not
 * serve the mailbox, so ten increments afterwards count ten.  A child a
 * kernel leaves behind ends with the device process at a reset. */
static void test_fork_in_kernel(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    int64_t value = 0;
    void *counter;
    CHECK_OK(pymic_mem_alloc(0, sizeof value, 0, &counter));
    CHECK_OK(pymic_memcpy_h2d(s, counter, 0, &value, sizeof value));
    CHECK_OK(pymic_invoke(s, find(lib, "fork_and_return"), 0, NULL));
    CHECK_OK(pymic_stream_sync(s));
    pymic_arg a = {counter, 0};
    pymic_kernel *increment = find(lib, "increment");
    for (int i = 0; i < 10; i++) {
        CHECK_OK(pymic_invoke(s, increment, 1, &a));
        CHECK_OK(pymic_stream_sync(s)); /* each on its own: a copy could take any */
    }
    CHECK_OK(pymic_memcpy_d2h(s, &value, counter, 0, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(value == 10);
    if (value != 10)
        fprintf(stderr, "ten increments after a fork counted %lld\n", (long long)value);

    int watch = watch_process(leave_a_child(s, lib));
    CHECK(watch >= 0);
    CHECK_OK(pymic_device_reset(0));
    CHECK(ended_in_time(watch));
    CHECK_OK(pymic_mem_free(s, counter));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(s));
}

/* Bytes of memory that the arena of the (only) process device holds: the
 * blocks of the memory file this process has open, or -1. */
static long long arena_held(void)
{
    DIR *dir = opendir("/proc/self/fd");
    long long bytes = -1;
    struct dirent *e;
    while (dir && (e = readdir(dir)) && bytes < 0) {
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        struct stat st;
        if (strstr(target, "memfd:pymic-device-memory") && stat(path, &st) == 0)
            bytes = (long long)st.st_blocks * 512;
    }
    if (dir)
        closedir(dir);
    return bytes;
}

/* Touch `bytes` of device memory at `p` from the device process. */
static void touch(pymic_stream *s, pymic_library *lib, void *p, size_t bytes)
{
    int64_t n = (int64_t)(bytes / sizeof(double));
    pymic_arg args[2] = {{p, 0}, {&n, sizeof n}};
    CHECK_OK(pymic_invoke(s, find(lib, "write_past"), 2, args));
    CHECK_OK(pymic_stream_sync(s));
}

/* Freed device memory goes back to the system: a large block at once, a
 * small one (kept for fast reuse) at a reset.  Measured as the memory
 * file's allocated blocks, not by timing. */
static void test_memory_returned(void)
{
    enum { BIG = 128 << 20, SMALL = 8 << 20, SLACK = 64 << 10 };
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    long long before = arena_held();
    CHECK(before >= 0);
    void *big;
    CHECK_OK(pymic_mem_alloc(0, BIG, 0, &big));
    touch(s, lib, big, BIG);
    long long touched = arena_held();
    CHECK(touched >= BIG); /* (earlier tests may have left pages it reused) */
    CHECK_OK(pymic_mem_free(s, big));
    CHECK_OK(pymic_stream_sync(s));
    long long after = arena_held();
    CHECK(after <= touched - BIG + SLACK);
    if (after > touched - BIG + SLACK)
        fprintf(stderr, "freeing %d bytes left the arena at %lld of %lld bytes\n", BIG, after,
                touched);

    void *small;
    CHECK_OK(pymic_mem_alloc(0, SMALL, 0, &small));
    touch(s, lib, small, SMALL);
    CHECK_OK(pymic_mem_free(s, small));
    CHECK_OK(pymic_stream_sync(s));
    long long warm = arena_held();
    CHECK(warm >= after + SMALL); /* kept: the next block of its size is fast */
    CHECK_OK(pymic_device_reset(0));
    CHECK(arena_held() <= warm - SMALL + SLACK);
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(s));
}

/* Run in a fresh process (see main): in a process group of its own (the
 * signals below go to every process in it), check that the signals of a
 * terminal -- Ctrl-C, Ctrl-\, Ctrl-Z -- sent to the group leave the device
 * process alone.  This process blocks them (its engine threads inherit
 * the mask; the device process does not). */
static int signals_side(void)
{
    if (setpgid(0, 0) != 0)
        return 1;
    sigset_t terminal;
    sigemptyset(&terminal);
    sigaddset(&terminal, SIGINT);
    sigaddset(&terminal, SIGQUIT);
    sigaddset(&terminal, SIGTSTP);
    pthread_sigmask(SIG_BLOCK, &terminal, NULL);
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    int64_t value = 0;
    void *counter;
    CHECK_OK(pymic_mem_alloc(0, sizeof value, 0, &counter));
    CHECK_OK(pymic_memcpy_h2d(s, counter, 0, &value, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(kill(0, SIGTSTP) == 0);
    CHECK(kill(0, SIGQUIT) == 0);
    CHECK(kill(0, SIGINT) == 0);
    pymic_arg a = {counter, 0};
    CHECK_OK(pymic_invoke(s, find(lib, "increment"), 1, &a));
    CHECK_OK(pymic_memcpy_d2h(s, &value, counter, 0, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(value == 1);
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
    CHECK_OK(pymic_mem_free(s, counter));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(s));
    return check_finish();
}

/* Run in a fresh process (see main): leave a child of a kernel behind,
 * report its pid on `fd`, wait for a byte on `go`, then end -- by exit
 * (`how` "exit") or by SIGKILL (no clean-up at all). */
static int orphan_side(int fd, int go, const char *how)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    char line[32];
    int used = snprintf(line, sizeof line, "%ld\n", (long)leave_a_child(s, lib));
    if (write(fd, line, (size_t)used) != used)
        return 1;
    char byte;
    if (read(go, &byte, 1) != 1)
        return 1;
    if (strcmp(how, "kill") == 0)
        raise(SIGKILL);
    return check_finish();
}

/* Run this test again as `mode` (signals_side or orphan_side) with
 * PYMIC_DEVICES=proc; returns its pid, *report the read end of its report
 * pipe, *go the write end of its go pipe. */
static pid_t run_again(const char *self, const char *mode, const char *how, int *report,
                       int *go)
{
    int up[2], down[2];
    CHECK(pipe(up) == 0 && pipe(down) == 0);
    pid_t child = fork();
    if (child == 0) {
        close(up[0]);
        close(down[1]);
        char up_arg[16], down_arg[16];
        snprintf(up_arg, sizeof up_arg, "%d", up[1]);
        snprintf(down_arg, sizeof down_arg, "%d", down[0]);
        setenv("PYMIC_DEVICES", "proc", 1);
        execl(self, self, kernels_path, mode, up_arg, down_arg, how, (char *)NULL);
        _exit(127);
    }
    close(up[1]);
    close(down[0]);
    *report = up[0];
    *go = down[1];
    return child;
}

static void test_terminal_signals(const char *self)
{
    int report, go;
    pid_t child = run_again(self, "--signals", "-", &report, &go);
    close(report);
    close(go);
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The child a kernel left ends with the program that used the device,
 * whether it exits or is killed. */
static void test_orphans_after_exit(const char *self, const char *how)
{
    int report, go;
    pid_t child = run_again(self, "--orphan", how, &report, &go);
    char line[32] = {0};
    ssize_t got = read(report, line, sizeof line - 1);
    close(report);
    long orphan = got > 0 ? atol(line) : 0;
    CHECK(orphan > 0);
    int watch = orphan > 0 ? watch_process((pid_t)orphan) : -1;
    CHECK(watch >= 0);
    CHECK(write(go, "x", 1) == 1);
    close(go);
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    if (strcmp(how, "exit") == 0)
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    else
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(ended_in_time(watch));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s KERNEL_LIBRARY\n", argv[0]);
        return 2;
    }
    kernels_path = argv[1];
    if (argc == 4 && strcmp(argv[2], "--child") == 0)
        return child_side(atoi(argv[3]));
    if (argc == 6 && strcmp(argv[2], "--signals") == 0)
        return signals_side();
    if (argc == 6 && strcmp(argv[2], "--orphan") == 0)
        return orphan_side(atoi(argv[3]), atoi(argv[4]), argv[5]);
    if (getenv("PYMIC_KERNEL_TIMEOUT")) {
        test_fault("spin_forever", "ran longer than PYMIC_KERNEL_TIMEOUT");
        return check_finish();
    }
    test_basics();
    test_fault("crash_segv", "killed by SIGSEGV");
    test_fault("crash_abort", "killed by SIGABRT");
    test_fault("crash_exit", "exited with status 3");
    test_fault("crash_segv", "killed by SIGSEGV"); /* every time */
    test_killed_from_outside();
    test_reset_forgets_what_it_stopped();
    test_descriptors_and_parent_death(argv[0]);
    test_terminal_signals(argv[0]);
    test_fork_in_kernel();
    test_memory_returned();
    test_orphans_after_exit(argv[0], "exit");
    test_orphans_after_exit(argv[0], "kill");
    return check_finish();
}
