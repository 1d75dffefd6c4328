/*
 * test_fork_order.c -- fork() while other threads run each path that holds
 * two of the global locks the fork handlers take (engine.c lists them):
 *
 *   a parked release     parked-release lock, then the allocation table
 *                        (and a backend's block lock)
 *   tracing              trace registry, then a device's stream list
 *   a library            library lock, then the backend's locks
 *   a process device     its monitor's lock, then the allocation table
 *   losing its process   (naming the allocation a fault hit)
 *
 * The fork handlers take every lock in the engine's one order; a path that
 * took two of them the other way round could hold one while the forking
 * thread holds the other and waits for it: the fork would never return.
 * Each child then takes every lock once and exits.  A hang is reported
 * (the child, or the parent's fork, never finishes: the test's timeout).
 *
 * Runs with PYMIC_DEVICES "proc;host" where the process device exists
 * (device 1 is the host device every child uses), else "host*2".
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *kernels_path;
static _Atomic int stop;
static int host; /* a host device, usable in every child */

/* Frees parked behind another stream's use, released by polls. */
static void *parked_releases(void *arg)
{
    (void)arg;
    pymic_stream *a, *b;
    pymic_library *lib;
    pymic_kernel *increment;
    if (pymic_stream_create(host, &a) || pymic_stream_create(host, &b) ||
        pymic_library_load(host, kernels_path, &lib) ||
        pymic_kernel_find(lib, "increment", &increment))
        abort();
    while (!atomic_load(&stop)) {
        void *counter;
        if (pymic_mem_alloc(host, 64, 0, &counter) != PYMIC_OK)
            abort();
        pymic_arg arg = {counter, 0};
        pymic_invoke(b, increment, 1, &arg); /* a use on b ...            */
        pymic_mem_free(a, counter);          /* ... parks the free on a   */
        pymic_device_sync(host);
    }
    pymic_stream_destroy(a);
    pymic_stream_destroy(b);
    pymic_library_unload(lib);
    return NULL;
}

static void *tracing(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        pymic_trace_start(64);
        pymic_trace_stop();
    }
    return NULL;
}

static void *libraries(void *arg)
{
    int device = *(int *)arg;
    while (!atomic_load(&stop)) {
        pymic_library *lib;
        pymic_kernel *k;
        if (pymic_library_load(device, kernels_path, &lib) == PYMIC_OK) {
            pymic_kernel_find(lib, "increment", &k);
            pymic_library_unload(lib);
        }
    }
    return NULL;
}

/* A kernel that writes into the guard page after an allocation, crashing
 * the process device again and again: the monitor names the allocation. */
static void *crashes(void *arg)
{
    int device = *(int *)arg;
    pymic_stream *s;
    void *buffer;
    if (pymic_stream_create(device, &s) || pymic_mem_alloc(device, 800, 0, &buffer))
        abort();
    while (!atomic_load(&stop)) {
        pymic_library *lib;
        pymic_kernel *past;
        if (pymic_library_load(device, kernels_path, &lib) == PYMIC_OK &&
            pymic_kernel_find(lib, "write_past", &past) == PYMIC_OK) {
            int64_t n = 100 + 4096 / 8;
            pymic_arg args[2] = {{buffer, 0}, {&n, sizeof n}};
            pymic_invoke(s, past, 2, args);
            pymic_stream_sync(s);
            pymic_library_unload(lib);
        }
        pymic_device_reset(device);
    }
    pymic_mem_free(s, buffer);
    pymic_stream_destroy(s);
    return NULL;
}

/* In the child: every lock the fork handlers took, once each. */
static void child(void)
{
    int failures = 0;
    pymic_stream *s;
    pymic_event *e;
    pymic_library *lib;
    pymic_kernel *k;
    void *mem;
    failures += pymic_stream_create(host, &s) != PYMIC_OK;
    failures += pymic_mem_alloc(host, 4096, 0, &mem) != PYMIC_OK;
    failures += pymic_mem_free(s, mem) != PYMIC_OK;
    failures += pymic_event_create(&e) != PYMIC_OK;
    failures += pymic_event_record(e, s) != PYMIC_OK;
    failures += pymic_event_sync(e) != PYMIC_OK;
    failures += pymic_library_load(host, kernels_path, &lib) != PYMIC_OK;
    failures += pymic_kernel_find(lib, "increment", &k) != PYMIC_OK;
    failures += pymic_library_unload(lib) != PYMIC_OK;
    failures += pymic_trace_start(64) != PYMIC_OK;
    failures += pymic_trace_stop() != PYMIC_OK;
    failures += pymic_device_sync(host) != PYMIC_OK;
    _exit(failures);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fork_once(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0)
        child();
    CHECK(pid > 0);
    /* A deadline only to report a hung child instead of waiting forever. */
    double start = now_seconds();
    int status = 0;
    pid_t done;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && now_seconds() - start < 20.0) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    if (done == 0) {
        fprintf(stderr, "a child forked while the engine was busy hung\n");
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECK(done == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s KERNEL_LIBRARY\n", argv[0]);
        return 2;
    }
    kernels_path = argv[1];
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* As in test_lifecycle.c: the sanitizers' allocators take no lock
     * around fork(), so a child can hang in malloc whatever pymic does. */
    printf("skipped under a sanitizer\n");
    return check_finish();
#endif
    int count;
    CHECK_OK(pymic_device_count(&count));
    int proc = -1;
    host = -1;
    for (int d = 0; d < count; d++) {
        pymic_device_info info;
        CHECK_OK(pymic_device_get_info(d, &info));
        if (strcmp(info.kind, "proc") == 0 && proc < 0)
            proc = d;
        else if (strcmp(info.kind, "host") == 0 && host < 0)
            host = d;
    }
    CHECK(host >= 0);
    if (host < 0)
        return check_finish();
    int other = proc >= 0 ? proc : host;
    pthread_t threads[4];
    int nthreads = 0;
    CHECK(pthread_create(&threads[nthreads++], NULL, parked_releases, NULL) == 0);
    CHECK(pthread_create(&threads[nthreads++], NULL, tracing, NULL) == 0);
    CHECK(pthread_create(&threads[nthreads++], NULL, libraries, &other) == 0);
    if (proc >= 0)
        CHECK(pthread_create(&threads[nthreads++], NULL, crashes, &proc) == 0);
    for (int i = 0; i < 300; i++)
        fork_once();
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    return check_finish();
}
