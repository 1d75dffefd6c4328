/*
 * test_lifetimes.c -- who keeps what alive and who waits for whom, across
 * streams: frees ordered against every stream that used the memory, events
 * as snapshots, destroys that never block, device syncs and unloads that
 * hold no lock while waiting and see streams being destroyed.
 *
 * Every check is an ordering: a gate kernel holds a stream until the test
 * opens it, so "must not have happened yet" is checked while it cannot
 * have, never by timing.
 *
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *lib_path;
static pymic_library *lib;
static pymic_kernel *k_gate, *k_append, *k_increment;

static pymic_kernel *find(pymic_library *l, const char *name)
{
    pymic_kernel *k = NULL;
    CHECK_OK(pymic_kernel_find(l, name, &k));
    return k;
}

/* Enqueue a kernel that holds `stream` until *gate becomes nonzero. */
static void hold(pymic_stream *stream, _Atomic int64_t *gate)
{
    atomic_store(gate, 0);
    pymic_arg arg = {(void *)gate, 0};
    CHECK_OK(pymic_invoke(stream, k_gate, 1, &arg));
}

static void append(pymic_stream *stream, int64_t *log, int64_t value)
{
    pymic_arg args[2] = {{log, 0}, {&value, sizeof value}};
    CHECK_OK(pymic_invoke(stream, k_append, 2, args));
}

static size_t memory_used(void)
{
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    return info.memory_used;
}

/* Memory freed on one stream while another still has a queued copy out of
 * it: the copy must read the old contents, however the freed block is
 * reused meanwhile (PyTorch's record_stream rule, made automatic). */
static void test_free_waits_for_other_streams(void)
{
    enum { N = 1 << 16 }; /* 512 KiB: the size of the caching allocator */
    pymic_stream *reader, *owner;
    CHECK_OK(pymic_stream_create(0, &reader));
    CHECK_OK(pymic_stream_create(0, &owner));
    double *host = malloc(N * sizeof *host), *seen = malloc(N * sizeof *seen);
    for (int i = 0; i < N; i++)
        host[i] = 5.0;
    void *a;
    CHECK_OK(pymic_mem_alloc(0, N * sizeof(double), 0, &a));
    CHECK_OK(pymic_memcpy_h2d(owner, a, 0, host, N * sizeof(double)));
    CHECK_OK(pymic_stream_sync(owner));
    size_t used_with_a = memory_used();

    _Atomic int64_t gate;
    hold(reader, &gate);
    CHECK_OK(pymic_memcpy_d2h(reader, seen, a, 0, N * sizeof(double)));
    CHECK_OK(pymic_mem_free(owner, a));
    CHECK_OK(pymic_stream_sync(owner)); /* the free has run on its stream */
    CHECK(memory_used() == used_with_a); /* ... but the memory is held */

    /* A new allocation of the same size, filled with 7.0: it must not be
     * the block the reader has yet to copy out of. */
    void *b;
    CHECK_OK(pymic_mem_alloc(0, N * sizeof(double), 0, &b));
    CHECK(b != a);
    for (int i = 0; i < N; i++)
        host[i] = 7.0;
    CHECK_OK(pymic_memcpy_h2d(owner, b, 0, host, N * sizeof(double)));
    CHECK_OK(pymic_stream_sync(owner));

    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(reader));
    int wrong = 0;
    for (int i = 0; i < N; i++)
        wrong += seen[i] != 5.0;
    CHECK(wrong == 0);
    CHECK_OK(pymic_device_sync(0)); /* releases what was parked */
    CHECK(memory_used() == used_with_a); /* a went, b came */

    /* An invoke given a pointer *inside* an allocation counts as a use of
     * the whole allocation. */
    int64_t *log;
    CHECK_OK(pymic_mem_alloc(0, 1 << 20, 0, (void **)&log));
    int64_t zero[2] = {0, 0};
    CHECK_OK(pymic_memcpy_h2d(owner, log, 0, zero, sizeof zero));
    CHECK_OK(pymic_stream_sync(owner));
    size_t used_with_log = memory_used();
    hold(reader, &gate);
    pymic_arg inside = {log + 1, 0};
    CHECK_OK(pymic_invoke(reader, k_increment, 1, &inside));
    CHECK_OK(pymic_mem_free(owner, log));
    CHECK_STATUS(pymic_device_sync_timeout(0, 0), PYMIC_ERR_TIMEOUT);
    CHECK_OK(pymic_stream_sync(owner));
    CHECK(memory_used() == used_with_log);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_device_sync(0));
    CHECK(memory_used() == used_with_log - (1 << 20));

    CHECK_OK(pymic_mem_free(owner, b));
    CHECK_OK(pymic_stream_destroy(reader));
    CHECK_OK(pymic_stream_destroy(owner));
    CHECK_OK(pymic_device_sync(0));
    free(host);
    free(seen);
}

/* A wait takes the record that existed when it was called: recording the
 * event again on an idle stream must not release it early (CUDA's rule). */
static void test_event_snapshots(void)
{
    pymic_stream *s1, *s2, *s3;
    pymic_event *e;
    CHECK_OK(pymic_stream_create(0, &s1));
    CHECK_OK(pymic_stream_create(0, &s2));
    CHECK_OK(pymic_stream_create(0, &s3));
    CHECK_OK(pymic_event_create(&e));
    int64_t log[8] = {0};
    _Atomic int64_t gate;

    hold(s1, &gate);
    append(s1, log, 1);
    CHECK_OK(pymic_event_record(e, s1));
    CHECK_OK(pymic_stream_wait_event(s3, e));
    append(s3, log, 2);
    CHECK_OK(pymic_event_record(e, s2)); /* s2 is idle: done at once */
    CHECK_OK(pymic_stream_sync(s2));
    CHECK_OK(pymic_event_sync(e)); /* the event as recorded now: on s2 */
    /* s3 still waits for s1's record: given time, it must not move. */
    uint64_t last = pymic_stream_last_enqueued(s3);
    CHECK_STATUS(pymic_stream_wait_seq_timeout(s3, last, 100 * 1000000ull), PYMIC_ERR_TIMEOUT);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(s3));
    CHECK(log[0] == 2 && log[1] == 1 && log[2] == 2);

    /* A host sync takes its snapshot too: re-recording on a held stream
     * after sync has started does not matter to it -- and a sync called
     * after the re-record waits for the new record. */
    hold(s1, &gate);
    CHECK_OK(pymic_event_record(e, s1));
    CHECK(pymic_event_query(e) == 0);
    CHECK_STATUS(pymic_event_sync_timeout(e, 1000000), PYMIC_ERR_TIMEOUT);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_event_sync(e));
    CHECK(pymic_event_query(e) == 1);

    CHECK_OK(pymic_event_destroy(e));
    CHECK_OK(pymic_stream_destroy(s1));
    CHECK_OK(pymic_stream_destroy(s2));
    CHECK_OK(pymic_stream_destroy(s3));
}

/* Destroying an event, a stream or a library returns at once, whatever is
 * queued; the queued work still runs and the resources go afterwards. */
static void test_destroys_never_block(void)
{
    pymic_stream *s, *other;
    pymic_event *e, *done;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_stream_create(0, &other));
    _Atomic int64_t gate;
    int64_t log[8] = {0};

    /* An event with a pending record, and one that another stream waits
     * for: both destroyed while the gate is closed. */
    CHECK_OK(pymic_event_create(&e));
    hold(s, &gate);
    append(s, log, 2);
    CHECK_OK(pymic_event_record(e, s));
    CHECK_OK(pymic_stream_wait_event(other, e));
    append(other, log, 1);
    CHECK_OK(pymic_event_destroy(e));

    /* A stream destroyed with work queued: the work still runs. */
    CHECK_OK(pymic_event_create(&done));
    CHECK_OK(pymic_event_record(done, s));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK(pymic_event_query(done) == 0);
    CHECK(log[0] == 0);

    atomic_store(&gate, 1);
    CHECK_OK(pymic_event_sync(done));
    CHECK_OK(pymic_stream_sync(other));
    CHECK(log[0] == 2 && log[1] == 2 && log[2] == 1);
    CHECK_OK(pymic_event_destroy(done));
    CHECK_OK(pymic_stream_destroy(other));
}

/* A private copy of the test library, so that whether it is still mapped
 * says whether pymic has closed it. */
static char private_copy[64];

static void make_private_copy(void)
{
    snprintf(private_copy, sizeof private_copy, "/tmp/pymic_test_copyXXXXXX.so");
    int fd = mkstemps(private_copy, 3);
    CHECK(fd >= 0);
    FILE *in = fopen(lib_path, "rb");
    CHECK(in != NULL);
    char buf[65536];
    size_t got;
    while (in && (got = fread(buf, 1, sizeof buf, in)) > 0)
        CHECK(write(fd, buf, got) == (ssize_t)got);
    if (in)
        fclose(in);
    close(fd);
}

static bool still_loaded(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h)
        dlclose(h);
    return h != NULL;
}

/* Unloading a library whose kernel runs on a stream that is being
 * destroyed: the library stays mapped until that stream has passed it
 * (a destroyed stream is still seen by unload and device sync until its
 * worker stops), then it is closed. */
static void test_unload_waits_for_destroyed_stream(void)
{
    make_private_copy();
    pymic_library *own;
    CHECK_OK(pymic_library_load(0, private_copy, &own));
    pymic_kernel *gate_kernel = find(own, "wait_for_gate");
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    _Atomic int64_t gate = 0;
    pymic_arg arg = {(void *)&gate, 0};
    CHECK_OK(pymic_invoke(s, gate_kernel, 1, &arg));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_library_unload(own));
    CHECK(still_loaded(private_copy));
    atomic_store(&gate, 1);
    CHECK_OK(pymic_device_sync(0));
    CHECK(!still_loaded(private_copy));
    unlink(private_copy);
}

/* device sync waits with no lock held: another thread can create and
 * destroy streams meanwhile. */
typedef struct sync_arg {
    _Atomic int started, finished;
} sync_arg;

static void *device_sync_thread(void *p)
{
    sync_arg *arg = p;
    atomic_store(&arg->started, 1);
    CHECK_OK(pymic_device_sync(0));
    atomic_store(&arg->finished, 1);
    return NULL;
}

static void *create_destroy_thread(void *p)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_stream_destroy(s));
    atomic_store((_Atomic int *)p, 1);
    return NULL;
}

static void test_device_sync_holds_no_lock(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    _Atomic int64_t gate;
    hold(s, &gate);
    sync_arg arg = {0, 0};
    pthread_t syncer, creator;
    pthread_create(&syncer, NULL, device_sync_thread, &arg);
    while (!atomic_load(&arg.started))
        sched_yield();
    /* Give the syncer every chance to be inside its wait, then create and
     * destroy a stream from another thread; it must finish while the gate
     * is still closed (bounded wait: a failure must not hang the test). */
    struct timespec pause = {0, 20 * 1000000};
    nanosleep(&pause, NULL);
    _Atomic int created = 0;
    pthread_create(&creator, NULL, create_destroy_thread, (void *)&created);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    int joined = pthread_timedjoin_np(creator, NULL, &deadline);
    CHECK(joined == 0 && atomic_load(&created) == 1);
    CHECK(atomic_load(&arg.finished) == 0); /* the syncer still waits */
    atomic_store(&gate, 1);
    pthread_join(syncer, NULL);
    if (joined != 0)
        pthread_join(creator, NULL);
    CHECK(atomic_load(&arg.finished) == 1);
    CHECK_OK(pymic_stream_destroy(s));
}

/* A kernel is a function the library itself defines: not a function of a
 * library it depends on, not a data object. */
static void test_kernels_are_own_functions(void)
{
    pymic_kernel *k = NULL;
    CHECK_STATUS(pymic_kernel_find(lib, "printf", &k), PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK_MESSAGE("not by this library");
    CHECK_STATUS(pymic_kernel_find(lib, "stdout", &k), PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK_STATUS(pymic_kernel_find(lib, "pymic_test_data_object", &k),
                 PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK_MESSAGE("not a function");
    CHECK(k == NULL);
    CHECK_OK(pymic_kernel_find(lib, "increment", &k));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s test_kernels.so\n", argv[0]);
        return 2;
    }
    lib_path = argv[1];
    CHECK_OK(pymic_library_load(0, lib_path, &lib));
    k_gate = find(lib, "wait_for_gate");
    k_append = find(lib, "append");
    k_increment = find(lib, "increment");
    test_free_waits_for_other_streams();
    test_event_snapshots();
    test_destroys_never_block();
    test_unload_waits_for_destroyed_stream();
    test_device_sync_holds_no_lock();
    test_kernels_are_own_functions();
    CHECK_OK(pymic_library_unload(lib));
    return check_finish();
}
