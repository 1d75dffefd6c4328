/*
 * test_config.c -- PYMIC_DEVICES and the other environment settings.
 *
 * The engine reads its environment once, so every case runs in a forked
 * child that sets the variables, initialises and checks; the child's exit
 * status is its number of failed checks.  The parent never initialises
 * the engine itself (fork after threads exist is not safe).
 */
#include "check.h"

#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int avail[CPU_SETSIZE], navail;

typedef void (*child_case)(const void *arg);

/* Run `body` in a child with PYMIC_DEVICES=devices (NULL: unset). */
static void in_child(const char *label, const char *devices, child_case body, const void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (devices)
            setenv("PYMIC_DEVICES", devices, 1);
        else
            unsetenv("PYMIC_DEVICES");
        body(arg);
        fflush(stderr);
        _exit(check_failed > 100 ? 100 : check_failed);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
        fprintf(stderr, "  case \"%s\" (PYMIC_DEVICES=%s) failed\n", label,
                devices ? devices : "<unset>");
    CHECK(ok);
}

static int device_cpus(int device, int *cpus)
{
    int n = -1;
    CHECK_OK(pymic_device_get_cpus(device, cpus, CPU_SETSIZE, &n));
    return n;
}

/* ------------------------------------------------------------ good layouts */

static void expect_one_device_on_all(const void *unused)
{
    (void)unused;
    CHECK_OK(pymic_init());
    int count = 0, cpus[CPU_SETSIZE];
    CHECK_OK(pymic_device_count(&count));
    CHECK(count == 1);
    CHECK(device_cpus(0, cpus) == navail);
    CHECK(memcmp(cpus, avail, sizeof *cpus * (size_t)navail) == 0);
}

static void expect_split(const void *arg)
{
    int n = *(const int *)arg;
    CHECK_OK(pymic_init());
    int count = 0;
    CHECK_OK(pymic_device_count(&count));
    CHECK(count == n);
    int total = 0;
    for (int d = 0; d < count; d++) {
        int cpus[CPU_SETSIZE];
        int k = device_cpus(d, cpus);
        CHECK(k >= 1);
        if (n <= navail) {
            /* An even, disjoint split in order. */
            CHECK(k == (d + 1) * navail / n - d * navail / n);
            CHECK(cpus[0] == avail[total]);
            total += k;
        } else {
            CHECK(k == 1 && cpus[0] == avail[d % navail]); /* round-robin */
        }
        pymic_device_info info;
        CHECK_OK(pymic_device_get_info(d, &info));
        CHECK(info.id == d && info.ncores == k);
    }
    if (n <= navail)
        CHECK(total == navail);
}

static void expect_explicit(const void *arg)
{
    (void)arg;
    CHECK_OK(pymic_init());
    int count = 0, cpus[CPU_SETSIZE];
    CHECK_OK(pymic_device_count(&count));
    CHECK(count == 3);
    CHECK(device_cpus(0, cpus) == 1 && cpus[0] == avail[navail - 1]);
    CHECK(device_cpus(1, cpus) == navail);
    CHECK(device_cpus(2, cpus) == 1 && cpus[0] == avail[0]);
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    char name[64];
    snprintf(name, sizeof name, "host:%d", avail[navail - 1]);
    CHECK(strcmp(info.name, name) == 0);
}

/* A worker of each device runs on that device's CPUs. */
static void expect_workers_pinned(const void *arg)
{
    const char *lib_path = arg;
    CHECK_OK(pymic_init());
    int count = 0;
    CHECK_OK(pymic_device_count(&count));
    for (int d = 0; d < count; d++) {
        pymic_library *lib;
        pymic_kernel *k;
        pymic_stream *s;
        CHECK_OK(pymic_library_load(d, lib_path, &lib));
        CHECK_OK(pymic_kernel_find(lib, "which_cpu", &k));
        CHECK_OK(pymic_stream_create(d, &s));
        int64_t cpu = -1;
        pymic_arg a = {&cpu, 0};
        for (int i = 0; i < 20; i++) {
            CHECK_OK(pymic_invoke(s, k, 1, &a));
            CHECK_OK(pymic_stream_sync(s));
            int cpus[CPU_SETSIZE], n = device_cpus(d, cpus), found = 0;
            for (int c = 0; c < n; c++)
                found |= cpus[c] == cpu;
            CHECK(found);
        }
        /* The device's OpenMP team has as many threads as it has cores. */
        pymic_kernel *team_k;
        CHECK_OK(pymic_kernel_find(lib, "omp_team_info", &team_k));
        int64_t team = 0, team_cpus[64];
        pymic_arg team_args[2] = {{&team, 0}, {team_cpus, 0}};
        CHECK_OK(pymic_invoke(s, team_k, 2, team_args));
        CHECK_OK(pymic_stream_sync(s));
        int cpus[CPU_SETSIZE];
        CHECK(team == device_cpus(d, cpus));
        CHECK_OK(pymic_stream_destroy(s));
        CHECK_OK(pymic_library_unload(lib));
    }
}

/* With the process restricted to one CPU, only that CPU can be named. */
static void expect_affinity_respected(const void *arg)
{
    (void)arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(avail[0], &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    char text[64];
    snprintf(text, sizeof text, "host:%d", avail[navail - 1]);
    setenv("PYMIC_DEVICES", text, 1);
    CHECK_STATUS(pymic_init(), PYMIC_ERR_CONFIG);
    CHECK_MESSAGE("affinity");
}

static void expect_env_settings(const void *arg)
{
    (void)arg;
    setenv("PYMIC_MEMORY_LIMIT", "3M", 1);
    setenv("PYMIC_SPIN_NS", "1234", 1);
    setenv("PYMIC_DEBUG", "0", 1);
    CHECK_OK(pymic_init());
    uint64_t spin = 0;
    CHECK_OK(pymic_get_spin_ns(&spin));
    CHECK(spin == 1234);
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_total == (size_t)3 << 20);
    void *p = NULL;
    CHECK_STATUS(pymic_mem_alloc(0, ((size_t)3 << 20) + 1, 0, &p), PYMIC_ERR_OUT_OF_MEMORY);
    CHECK_OK(pymic_mem_alloc(0, (size_t)3 << 20, 0, &p));
    /* "back to the default" is the environment's limit. */
    CHECK_STATUS(pymic_device_set_memory_limit(0, 0), PYMIC_OK);
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_total == (size_t)3 << 20);
}

/* PYMIC_DEBUG=1 prints the layout and every failure on stderr, each line
 * prefixed "PYMIC:". */
static void expect_debug_messages(const void *arg)
{
    (void)arg;
    char path[] = "/tmp/pymic_test_debugXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    setenv("PYMIC_DEBUG", "1", 1);
    CHECK_OK(pymic_init());
    int level = 0;
    CHECK_OK(pymic_get_debug_level(&level));
    CHECK(level == 1);
    void *p;
    CHECK_STATUS(pymic_mem_alloc(0, 0, 0, &p), PYMIC_ERR_INVALID_ARGUMENT);
    fflush(stderr);
    dup2(saved, 2);
    char text[4096] = {0};
    CHECK(pread(fd, text, sizeof text - 1, 0) > 0);
    close(fd);
    unlink(path);
    CHECK(strncmp(text, "PYMIC: device 0: host:", 22) == 0);
    CHECK(strstr(text, "PYMIC: PYMIC_ERR_INVALID_ARGUMENT: pymic_mem_alloc: device 0: size is "
                       "zero") != NULL);
}

/* ------------------------------------------------------------- bad settings */

static void expect_config_error(const void *arg)
{
    (void)arg;
    CHECK_STATUS(pymic_init(), PYMIC_ERR_CONFIG);
    CHECK_MESSAGE("PYMIC_");
    /* Every later call reports the same problem; nothing crashes. */
    int count = 0;
    CHECK_STATUS(pymic_device_count(&count), PYMIC_ERR_CONFIG);
    pymic_stream *s;
    CHECK_STATUS(pymic_stream_create(0, &s), PYMIC_ERR_CONFIG);
    CHECK_STATUS(pymic_init(), PYMIC_ERR_CONFIG);
}

static void expect_bad_variable(const void *arg)
{
    const char *const *pair = arg;
    setenv(pair[0], pair[1], 1);
    expect_config_error(NULL);
    CHECK_MESSAGE(pair[0]);
}

int main(int argc, char **argv)
{
    cpu_set_t mask;
    if (argc < 2 || sched_getaffinity(0, sizeof mask, &mask) != 0) {
        fprintf(stderr, "usage: %s test_kernels.so\n", argv[0]);
        return 2;
    }
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mask))
            avail[navail++] = c;

    in_child("default", NULL, expect_one_device_on_all, NULL);
    in_child("empty", "", expect_one_device_on_all, NULL);
    in_child("host", "host", expect_one_device_on_all, NULL);
    in_child("host, blanks", "  host ", expect_one_device_on_all, NULL);
    static const int splits[] = {1, 2, 3, 5};
    for (size_t i = 0; i < sizeof splits / sizeof *splits; i++) {
        char text[32];
        snprintf(text, sizeof text, "host*%d", splits[i]);
        in_child("split", text, expect_split, &splits[i]);
    }
    int more = navail + 1;
    char text[128];
    snprintf(text, sizeof text, "host*%d", more);
    in_child("more devices than cores", text, expect_split, &more);
    snprintf(text, sizeof text, "host:%d; host:%d-%d ;host:%d,%d", avail[navail - 1], avail[0],
             avail[navail - 1], avail[0], avail[0]);
    if (navail == avail[navail - 1] - avail[0] + 1) /* the range form needs contiguous CPUs */
        in_child("explicit lists", text, expect_explicit, NULL);
    in_child("pinned workers, host*2", "host*2", expect_workers_pinned, argv[1]);
    in_child("affinity mask", NULL, expect_affinity_respected, NULL);
    in_child("environment settings", NULL, expect_env_settings, NULL);
    in_child("debug messages", NULL, expect_debug_messages, NULL);

    static const char *const bad_layouts[] = {
        "gpu", "host*0", "host*", "host*x", "host*2x", "host*100000", "host:", "host:1-0",
        "host:99999", "host:0;;host:0", ";", "host;", "host:0-", "host:a", "hostess",
        "host:0 1", "host*-1", "host:,0",
    };
    for (size_t i = 0; i < sizeof bad_layouts / sizeof *bad_layouts; i++)
        in_child("bad layout", bad_layouts[i], expect_config_error, NULL);

    static const char *const bad_vars[][2] = {
        {"PYMIC_MEMORY_LIMIT", "12Q"}, {"PYMIC_MEMORY_LIMIT", "-5"},
        {"PYMIC_MEMORY_LIMIT", "0"},   {"PYMIC_MEMORY_LIMIT", "99999999999T"},
        {"PYMIC_SPIN_NS", "abc"},      {"PYMIC_SPIN_NS", "-1"},
        {"PYMIC_DEBUG", "loud"},
    };
    for (size_t i = 0; i < sizeof bad_vars / sizeof *bad_vars; i++)
        in_child("bad variable", NULL, expect_bad_variable, bad_vars[i]);
    return check_finish();
}
