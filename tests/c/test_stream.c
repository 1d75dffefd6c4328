/*
 * test_stream.c -- streams and kernel invocation: ordering, scalars,
 * argument limits, sequence numbers, several producer threads, a full
 * command ring, draining on destroy, and device syncs that look only at
 * the streams with work.
 *
 * argv[1]: the test kernel library, argv[2]: the 128-argument library.
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static pymic_library *lib;
static pymic_kernel *k_empty, *k_increment, *k_append, *k_add, *k_gate, *k_cpu, *k_double;

static pymic_kernel *find(pymic_library *l, const char *name)
{
    pymic_kernel *k = NULL;
    CHECK_OK(pymic_kernel_find(l, name, &k));
    return k;
}

static pymic_arg ptr_arg(void *p)
{
    return (pymic_arg){p, 0};
}

static void test_invoke_basics(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK(pymic_stream_device(s) == 0);
    CHECK(pymic_stream_last_enqueued(s) == 0 && pymic_stream_completed(s) == 0);
    CHECK(pymic_stream_query(s) == 1);

    CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    CHECK(pymic_stream_last_enqueued(s) == 1);
    CHECK_OK(pymic_stream_sync(s));
    CHECK(pymic_stream_completed(s) == 1);

    /* Scalars are copied at enqueue: changing them afterwards has no effect. */
    double out = 0, a = 1.5;
    int64_t b = 40;
    pymic_arg args[3] = {ptr_arg(&out), {&a, sizeof a}, {&b, sizeof b}};
    CHECK_OK(pymic_invoke(s, k_add, 3, args));
    a = 100;
    b = 100;
    CHECK_OK(pymic_stream_sync(s));
    CHECK(out == 41.5);

    /* Device memory arguments. */
    enum { N = 1000 };
    double in[N], res[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    void *din = NULL, *dout = NULL;
    CHECK_OK(pymic_mem_alloc(0, sizeof in, 0, &din));
    CHECK_OK(pymic_mem_alloc(0, sizeof res, 0, &dout));
    int64_t n = N;
    pymic_arg dargs[3] = {ptr_arg(din), ptr_arg(dout), {&n, sizeof n}};
    CHECK_OK(pymic_memcpy_h2d(s, din, 0, in, sizeof in));
    CHECK_OK(pymic_invoke(s, k_double, 3, dargs));
    CHECK_OK(pymic_memcpy_d2h(s, res, dout, 0, sizeof res));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(res[0] == 0 && res[N - 1] == 2.0 * (N - 1));
    CHECK_OK(pymic_mem_free(s, din));
    CHECK_OK(pymic_mem_free(s, dout));

    /* A wait_seq on a past command returns at once. */
    CHECK_OK(pymic_stream_wait_seq(s, 2));
    CHECK_STATUS(pymic_stream_wait_seq(s, 1000000), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("never enqueued");

    /* The worker runs on the device's CPUs. */
    int64_t cpu = -1;
    pymic_arg cpu_arg = ptr_arg(&cpu);
    CHECK_OK(pymic_invoke(s, k_cpu, 1, &cpu_arg));
    CHECK_OK(pymic_stream_sync(s));
    int cpus[CPU_SETSIZE], ncpus = 0;
    CHECK_OK(pymic_device_get_cpus(0, cpus, CPU_SETSIZE, &ncpus));
    int on_device = 0;
    for (int i = 0; i < ncpus; i++)
        on_device |= cpus[i] == cpu;
    CHECK(on_device);

    /* An OpenMP team in a kernel has one thread per device core, all on
     * the device's CPUs. */
    int64_t team = 0;
    _Atomic int64_t team_cpus[64];
    for (int i = 0; i < 64; i++)
        atomic_init(&team_cpus[i], -1);
    pymic_arg team_args[2] = {ptr_arg(&team), ptr_arg((void *)team_cpus)};
    CHECK_OK(pymic_invoke(s, find(lib, "omp_team_info"), 2, team_args));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(team == ncpus);
    for (int t = 0; t < team && t < 64; t++) {
        int found = 0;
        for (int i = 0; i < ncpus; i++)
            found |= cpus[i] == atomic_load(&team_cpus[t]);
        CHECK(found);
    }

    CHECK_OK(pymic_stream_destroy(s));
}

static void test_invoke_errors(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    double x = 0;
    pymic_arg bad_scalar = {NULL, 8};
    CHECK_STATUS(pymic_invoke(NULL, k_empty, 0, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("invoke on a NULL stream");
    CHECK_STATUS(pymic_invoke(s, NULL, 0, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_invoke(s, k_empty, -1, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_invoke(s, k_empty, 1, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_invoke(s, k_empty, 1, &bad_scalar), PYMIC_ERR_INVALID_ARGUMENT);
    pymic_arg huge = {&x, PYMIC_MAX_SCALAR_BYTES + 1};
    CHECK_STATUS(pymic_invoke(s, k_empty, 1, &huge), PYMIC_ERR_TOO_MANY_ARGS);
    /* 129 16-byte scalars would need more room than a command has. */
    pymic_arg scalars[PYMIC_MAX_KERNEL_ARGS];
    for (int i = 0; i < PYMIC_MAX_KERNEL_ARGS; i++)
        scalars[i] = (pymic_arg){&x, 8};
    CHECK_OK(pymic_invoke(s, k_empty, PYMIC_MAX_KERNEL_ARGS, scalars)); /* exactly fits */
    char big_scalar[17] = {0};
    scalars[0] = (pymic_arg){big_scalar, sizeof big_scalar}; /* 32 bytes with padding */
    CHECK_STATUS(pymic_invoke(s, k_empty, PYMIC_MAX_KERNEL_ARGS, scalars),
                 PYMIC_ERR_TOO_MANY_ARGS);
    CHECK(pymic_stream_last_enqueued(s) == 1);
    CHECK_OK(pymic_stream_sync(s));

    CHECK_STATUS(pymic_stream_sync(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_stream_query(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(pymic_stream_device(NULL) < 0);
    CHECK_STATUS(pymic_stream_destroy(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_stream_wait_seq(NULL, 1), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(pymic_stream_last_enqueued(NULL) == 0 && pymic_stream_completed(NULL) == 0);
    CHECK_STATUS(pymic_stream_create(0, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    pymic_stream *t;
    CHECK_STATUS(pymic_stream_create(9, &t), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_OK(pymic_stream_destroy(s));
}

static void test_many_args(const char *path)
{
    pymic_library *many;
    CHECK_OK(pymic_library_load(0, path, &many));
    pymic_kernel *k = find(many, "sum128");
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));

    int64_t out = 0, values[PYMIC_MAX_KERNEL_ARGS];
    pymic_arg args[PYMIC_MAX_KERNEL_ARGS + 1];
    args[0] = ptr_arg(&out);
    int64_t expected = 0;
    for (int i = 1; i < PYMIC_MAX_KERNEL_ARGS; i++) {
        values[i] = 1000 + i;
        /* Alternate scalars (copied) and pointers (passed through). */
        args[i] = (i % 2) ? (pymic_arg){&values[i], sizeof values[i]} : ptr_arg(&values[i]);
        expected += values[i] * i;
    }
    CHECK_OK(pymic_invoke(s, k, PYMIC_MAX_KERNEL_ARGS, args));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(out == expected);

    args[PYMIC_MAX_KERNEL_ARGS] = ptr_arg(NULL);
    CHECK_STATUS(pymic_invoke(s, k, PYMIC_MAX_KERNEL_ARGS + 1, args), PYMIC_ERR_TOO_MANY_ARGS);
    CHECK_MESSAGE("129 arguments");
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_library_unload(many));
}

static void *open_gate_later(void *gate)
{
    struct timespec delay = {0, 20 * 1000000};
    nanosleep(&delay, NULL);
    atomic_store((_Atomic int64_t *)gate, 1);
    return NULL;
}

/* More commands than the ring holds, behind a kernel that blocks: the
 * producer must wait for room, not fail, and order must hold. */
static void test_full_ring_and_order(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    enum { COUNT = 1000 };
    int64_t *log = calloc(COUNT + 1, sizeof *log);
    _Atomic int64_t gate = 0;
    pymic_arg gate_arg = ptr_arg((void *)&gate);
    CHECK_OK(pymic_invoke(s, k_gate, 1, &gate_arg));
    CHECK(pymic_stream_query(s) == 0);
    /* The gate opens from another thread once the ring has filled up and
     * this thread is blocked waiting for room. */
    pthread_t opener;
    CHECK(pthread_create(&opener, NULL, open_gate_later, (void *)&gate) == 0);
    for (int64_t i = 0; i < COUNT; i++) {
        pymic_arg args[2] = {ptr_arg(log), {&i, sizeof i}};
        CHECK_OK(pymic_invoke(s, k_append, 2, args));
    }
    CHECK_OK(pymic_stream_sync(s));
    pthread_join(opener, NULL);
    CHECK(log[0] == COUNT);
    int in_order = 1;
    for (int64_t i = 0; i < COUNT; i++)
        in_order &= log[1 + i] == i;
    CHECK(in_order);
    CHECK(pymic_stream_completed(s) == COUNT + 1);
    free(log);
    CHECK_OK(pymic_stream_destroy(s));
}

/* pymic_stream_capacity is exact: behind a blocked command, capacity
 * commands (the blocked one included) fit without waiting, and the next
 * enqueue waits until the oldest completes. */
typedef struct extra_producer {
    pymic_stream *stream;
    _Atomic int done;
} extra_producer;

static void *enqueue_one_more(void *arg)
{
    extra_producer *p = arg;
    pymic_invoke(p->stream, k_empty, 0, NULL);
    atomic_store(&p->done, 1);
    return NULL;
}

static void test_capacity(void)
{
    CHECK(pymic_stream_capacity(NULL) == PYMIC_ERR_INVALID_ARGUMENT);
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int capacity = pymic_stream_capacity(s);
    CHECK(capacity == 128);
    _Atomic int64_t gate = 0;
    pymic_arg gate_arg = ptr_arg((void *)&gate);
    CHECK_OK(pymic_invoke(s, k_gate, 1, &gate_arg));
    for (int i = 1; i < capacity; i++)
        CHECK_OK(pymic_invoke(s, k_empty, 0, NULL)); /* must not block */
    CHECK(pymic_stream_last_enqueued(s) - pymic_stream_completed(s) == (uint64_t)capacity);
    extra_producer p = {s, 0};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, enqueue_one_more, &p) == 0);
    struct timespec delay = {0, 50 * 1000000};
    nanosleep(&delay, NULL);
    CHECK(atomic_load(&p.done) == 0); /* the ring is full: it waits */
    atomic_store(&gate, 1);
    pthread_join(thread, NULL);
    CHECK(atomic_load(&p.done) == 1);
    CHECK_OK(pymic_stream_sync(s));
    CHECK(pymic_stream_completed(s) == (uint64_t)capacity + 1);
    CHECK_OK(pymic_stream_destroy(s));
}

/* Several host threads enqueue into one shared stream and into a stream
 * of their own at the same time.  The shared counter is only touched by
 * the shared stream's worker, so it must count every invoke exactly once;
 * each thread's private log must be in that thread's order. */
enum { PRODUCERS = 4, PER_PRODUCER = 2000 };

typedef struct producer {
    pymic_stream *shared;
    int64_t *shared_counter;
    int64_t log[PER_PRODUCER + 1];
    int failures;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    pymic_stream *own;
    if (pymic_stream_create(0, &own) != PYMIC_OK)
        return (void *)1;
    for (int64_t i = 0; i < PER_PRODUCER; i++) {
        pymic_arg inc = ptr_arg(p->shared_counter);
        pymic_arg app[2] = {ptr_arg(p->log), {&i, sizeof i}};
        p->failures += pymic_invoke(p->shared, k_increment, 1, &inc) != PYMIC_OK;
        p->failures += pymic_invoke(own, k_append, 2, app) != PYMIC_OK;
        if (i % 500 == 0)
            p->failures += pymic_stream_sync(p->shared) != PYMIC_OK;
    }
    p->failures += pymic_stream_sync(own) != PYMIC_OK;
    p->failures += pymic_stream_destroy(own) != PYMIC_OK;
    return NULL;
}

static void test_concurrent_producers(void)
{
    pymic_stream *shared;
    CHECK_OK(pymic_stream_create(0, &shared));
    int64_t counter = 0;
    static producer producers[PRODUCERS];
    pthread_t threads[PRODUCERS];
    for (int t = 0; t < PRODUCERS; t++) {
        producers[t] = (producer){.shared = shared, .shared_counter = &counter};
        CHECK(pthread_create(&threads[t], NULL, produce, &producers[t]) == 0);
    }
    for (int t = 0; t < PRODUCERS; t++) {
        void *result;
        pthread_join(threads[t], &result);
        CHECK(result == NULL);
        CHECK(producers[t].failures == 0);
    }
    CHECK_OK(pymic_stream_sync(shared));
    CHECK(counter == PRODUCERS * PER_PRODUCER);
    CHECK(pymic_stream_completed(shared) == PRODUCERS * PER_PRODUCER);
    for (int t = 0; t < PRODUCERS; t++) {
        int in_order = producers[t].log[0] == PER_PRODUCER;
        for (int64_t i = 0; i < PER_PRODUCER && in_order; i++)
            in_order = producers[t].log[1 + i] == i;
        CHECK(in_order);
    }
    CHECK_OK(pymic_stream_destroy(shared));
}

/* Destroying a stream with work queued runs that work first. */
/* Destroy returns at once; what was queued before still runs, in order. */
static void test_destroy_returns_and_work_runs(void)
{
    pymic_stream *s;
    pymic_event *done;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_event_create(&done));
    _Atomic int64_t gate = 0;
    int64_t counter = 0;
    pymic_arg g = ptr_arg((void *)&gate), inc = ptr_arg(&counter);
    CHECK_OK(pymic_invoke(s, k_gate, 1, &g));
    for (int i = 0; i < 100; i++) /* fits the ring behind the gate */
        CHECK_OK(pymic_invoke(s, k_increment, 1, &inc));
    CHECK_OK(pymic_event_record(done, s));
    CHECK_OK(pymic_stream_destroy(s)); /* with the gate closed */
    CHECK(counter == 0);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_event_sync(done));
    CHECK(counter == 100);
    CHECK_OK(pymic_event_destroy(done));
}

/* With a zero spin window every wait sleeps on the futex at once: the
 * sleep/wake path must be as correct as the spinning one. */
static void test_sleeping_waits(void)
{
    CHECK_OK(pymic_set_spin_ns(0));
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int64_t counter = 0;
    pymic_arg inc = ptr_arg(&counter);
    for (int i = 0; i < 200; i++) {
        CHECK_OK(pymic_invoke(s, k_increment, 1, &inc));
        if (i % 3 == 0)
            CHECK_OK(pymic_stream_sync(s));
    }
    CHECK_OK(pymic_device_sync(0));
    CHECK(counter == 200);
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_set_spin_ns(50000));
}

/* Timed waits give up with TIMEOUT while a gate holds the stream, leave
 * the work queued, and succeed once it is opened. */
static void test_timed_waits(void)
{
    pymic_stream *s;
    pymic_event *e;
    /* Streams of earlier tests may still be running their last commands
     * and their STOP (a destroy does not wait): the device-wide checks
     * below concern this test's stream only. */
    CHECK_OK(pymic_device_sync(0));
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_event_create(&e));
    _Atomic int64_t gate = 0;
    pymic_arg g = ptr_arg((void *)&gate);
    CHECK_OK(pymic_invoke(s, k_gate, 1, &g));
    CHECK_OK(pymic_event_record(e, s));
    uint64_t last = pymic_stream_last_enqueued(s);
    CHECK_STATUS(pymic_stream_wait_seq_timeout(s, last, 1000000), PYMIC_ERR_TIMEOUT);
    CHECK_STATUS(pymic_event_sync_timeout(e, 0), PYMIC_ERR_TIMEOUT);
    CHECK_STATUS(pymic_device_sync_timeout(0, 1000000), PYMIC_ERR_TIMEOUT);
    CHECK(pymic_stream_query(s) == 0);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_wait_seq_timeout(s, last, UINT64_MAX));
    CHECK_OK(pymic_event_sync_timeout(e, 0));
    CHECK_OK(pymic_device_sync_timeout(0, 0));
    CHECK_OK(pymic_event_destroy(e));
    CHECK_OK(pymic_stream_destroy(s));
}

/* A device sync looks only at streams with work (device.c, "Which streams
 * have work"): a thousand idle streams cost it nothing, one that had work
 * is looked at once more after it drained, and a stream with work among
 * them is still waited for.  Runs first: no stream of another test may be
 * on its way out meanwhile. */
static void test_device_sync_skips_idle_streams(void)
{
    enum { IDLE = 1000 };
    static pymic_stream *idle[IDLE];
    for (int i = 0; i < IDLE; i++)
        CHECK_OK(pymic_stream_create(0, &idle[i]));
    uint64_t before = 0, after = 0;
    CHECK_OK(pymic_device_sync_visits(0, &before));
    CHECK_OK(pymic_device_sync(0));
    CHECK_OK(pymic_device_sync_visits(0, &after));
    CHECK(after == before);

    /* One stream with work, held by a gate: a device sync waits for it
     * (a poll times out) and looks at nothing else. */
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    _Atomic int64_t gate = 0;
    pymic_arg g = ptr_arg((void *)&gate);
    CHECK_OK(pymic_invoke(s, k_gate, 1, &g));
    CHECK_OK(pymic_device_sync_visits(0, &before));
    CHECK_STATUS(pymic_device_sync_timeout(0, 0), PYMIC_ERR_TIMEOUT);
    CHECK_OK(pymic_device_sync_visits(0, &after));
    CHECK(after - before == 1);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_device_sync(0));
    CHECK(pymic_stream_completed(s) == 1);

    /* Every stream has had work, now drained by stream syncs: the next
     * device sync looks at each once, the one after at none. */
    for (int i = 0; i < IDLE; i++)
        CHECK_OK(pymic_invoke(idle[i], k_empty, 0, NULL));
    for (int i = 0; i < IDLE; i++)
        CHECK_OK(pymic_stream_sync(idle[i]));
    CHECK_OK(pymic_device_sync_visits(0, &before));
    CHECK_OK(pymic_device_sync(0));
    CHECK_OK(pymic_device_sync_visits(0, &after));
    CHECK(after - before == IDLE + 1);
    CHECK_OK(pymic_device_sync(0));
    CHECK_OK(pymic_device_sync_visits(0, &before));
    CHECK(before == after);

    CHECK_STATUS(pymic_device_sync_visits(0, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_device_sync_visits(99, &before), PYMIC_ERR_INVALID_ARGUMENT);
    for (int i = 0; i < IDLE; i++)
        CHECK_OK(pymic_stream_destroy(idle[i]));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_device_sync(0));
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s test_kernels.so many_args.so\n", argv[0]);
        return 2;
    }
    CHECK_OK(pymic_library_load(0, argv[1], &lib));
    k_empty = find(lib, "empty_kernel");
    k_increment = find(lib, "increment");
    k_append = find(lib, "append");
    k_add = find(lib, "add_scalars");
    k_gate = find(lib, "wait_for_gate");
    k_cpu = find(lib, "which_cpu");
    k_double = find(lib, "double_it");
    test_device_sync_skips_idle_streams();
    test_invoke_basics();
    test_invoke_errors();
    test_many_args(argv[2]);
    test_full_ring_and_order();
    test_capacity();
    test_concurrent_producers();
    test_destroy_returns_and_work_runs();
    test_sleeping_waits();
    test_timed_waits();
    CHECK_OK(pymic_library_unload(lib));
    return check_finish();
}
