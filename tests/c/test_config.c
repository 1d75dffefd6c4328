/*
 * test_config.c -- PYMIC_DEVICES and the other environment settings.
 *
 * The engine reads its environment once, so every case runs in a forked
 * child that sets the variables, initialises and checks; the child's exit
 * status is its number of failed checks.  The parent never initialises
 * the engine itself (fork after threads exist is not safe).
 */
#include "check.h"

/* The parser and the host:auto helpers are internal to libpymic (its
 * symbols are hidden): compiled into this test, they can be called with
 * made-up CPU lists.  config.c uses nothing else of the engine but the
 * cgroup look-up (cgroup.c, compiled in too). */
#include "../../src/engine/config.c"
#include "../../src/engine/cgroup.c"
#include "../../src/engine/registry.c"

/* The registry's built-in tables are libpymic's (hidden there): these
 * stand in for them.  Parsing reads only a table's name and cpu_specs;
 * the engine itself (in the forked children) uses its own. */
const pymic_backend_ops pymic_host_backend = {
    .abi_version = PYMIC_BACKEND_ABI, .kind = "host", .cpu_specs = true};
const pymic_backend_ops pymic_proc_backend = {
    .abi_version = PYMIC_BACKEND_ABI, .kind = "proc", .cpu_specs = true};

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
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
        check_failed = 0; /* the child's status counts its own failures only */
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
    CHECK(strstr(text, "PYMIC: PYMIC_ERR_INVALID_ARGUMENT: allocation on device 0: size is "
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

/* -------------------------------------------------------------- host:auto
 *
 * The parser itself, called with made-up affinity masks and node CPU
 * lists (so the cases do not depend on this machine), and the launcher
 * variables of each case set in the environment.  Each case runs in a
 * child like the rest, so the variables never leak into another case. */

static const char *const launcher_variables[] = {
    "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALRANKID",
    "MPI_LOCALNRANKS", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_TASKS_PER_NODE",
    "SLURM_STEP_TASKS_PER_NODE",
};

/* Clear every launcher variable, then set the NULL-terminated name/value pairs. */
static void set_launcher(const char *const *pairs)
{
    for (size_t i = 0; i < sizeof launcher_variables / sizeof *launcher_variables; i++)
        unsetenv(launcher_variables[i]);
    for (; pairs && pairs[0]; pairs += 2)
        setenv(pairs[0], pairs[1], 1);
}

/* A CPU list in the kernel's format, parsed with the engine's own parser. */
static pymic_device_spec cpu_list(const char *text)
{
    pymic_device_spec spec = {0};
    char why[128];
    if (text)
        CHECK_OK(parse_cpu_list(text, text + strlen(text), NULL, 0, &spec, why, sizeof why));
    return spec;
}

typedef struct auto_case {
    const char *label;
    const char *layout;   /* NULL: "host:auto" */
    const char *env[12];  /* launcher variables: name, value, ..., NULL */
    const char *mask;     /* the process affinity mask */
    const char *node;     /* the node's CPUs; NULL: unknown */
    const char *expect;   /* CPUs of each device, ';'-separated; NULL: a config error */
    const char *message;  /* text the note (or the error) must contain */
    int own;              /* the rank's own device (pymic_local_device) */
    int nlazy;            /* devices set up only on first use */
} auto_case;

/* Every rank of a node sees the same list, one device per local rank, and
 * its own share at its local rank; the others' entries are lazy. */
static const auto_case auto_cases[] = {
    {"no launcher: like host", NULL, {NULL}, "0-7", "0-7", "0-7", "no MPI launcher", 0, 0},
    {"no launcher, bound: the mask", NULL, {NULL}, "2-3", "0-7", "2-3", "as \"host\"", 0, 0},
    {"empty variables are unset", NULL, {"OMPI_COMM_WORLD_LOCAL_RANK", "", NULL}, "0-7", "0-7",
     "0-7", "no MPI launcher", 0, 0},
    {"Open MPI rank 0 of 2", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "0", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "0-7", "0-7",
     "0-3;4-7", "local rank 0 of 2 (OMPI_COMM_WORLD_LOCAL_RANK)", 0, 1},
    {"Open MPI rank 1 of 2", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "0-7", "0-7",
     "0-3;4-7", "local rank 1 of 2", 1, 1},
    {"Open MPI rank 0 of 3", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "0", "OMPI_COMM_WORLD_LOCAL_SIZE", "3", NULL}, "0-7", "0-7",
     "0-1;2-4;5-7", "2 CPUs", 0, 2},
    {"Open MPI rank 1 of 3", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "3", NULL}, "0-7", "0-7",
     "0-1;2-4;5-7", "3 CPUs", 1, 2},
    {"Open MPI rank 2 of 3", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "2", "OMPI_COMM_WORLD_LOCAL_SIZE", "3", NULL}, "0-7", "0-7",
     "0-1;2-4;5-7", "3 CPUs", 2, 2},
    {"MPICH/Hydra rank 1 of 4", NULL,
     {"MPI_LOCALRANKID", "1", "MPI_LOCALNRANKS", "4", NULL}, "0-7", "0-7", "0-1;2-3;4-5;6-7",
     "local rank 1 of 4 (MPI_LOCALRANKID)", 1, 3},
    {"Slurm, compressed list, node 1", NULL,
     {"SLURM_LOCALID", "1", "SLURM_NODEID", "1", "SLURM_STEP_TASKS_PER_NODE", "2(x3),1", NULL},
     "0-7", "0-7", "0-3;4-7", "local rank 1 of 2 (SLURM_LOCALID)", 1, 1},
    {"Slurm, last node of the list", NULL,
     {"SLURM_LOCALID", "0", "SLURM_NODEID", "3", "SLURM_STEP_TASKS_PER_NODE", "2(x3),1", NULL},
     "0-7", "0-7", "0-7", "local rank 0 of 1", 0, 0},
    {"Slurm, no node id: node 0", NULL,
     {"SLURM_LOCALID", "0", "SLURM_STEP_TASKS_PER_NODE", "3,1", NULL}, "0-7", "0-7",
     "0-1;2-4;5-7", "local rank 0 of 3", 0, 2},
    {"Slurm, the step's list, not the job's", NULL,
     {"SLURM_LOCALID", "1", "SLURM_TASKS_PER_NODE", "4", "SLURM_STEP_TASKS_PER_NODE", "2",
      NULL}, "0-7", "0-7", "0-3;4-7", "of 2", 1, 1},
    {"Slurm batch script (no step): like host", NULL,
     {"SLURM_LOCALID", "0", "SLURM_NODEID", "0", "SLURM_TASKS_PER_NODE", "4", NULL}, "0-7",
     "0-7", "0-7", "no MPI launcher", 0, 0},
    {"mpirun inside Slurm: Open MPI wins", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", "SLURM_LOCALID", "0",
      "SLURM_STEP_TASKS_PER_NODE", "1", NULL}, "0-7", "0-7", "0-3;4-7",
     "OMPI_COMM_WORLD_LOCAL_RANK", 1, 1},
    /* Bound: the own entry is the binding; the others are the node split
     * by local rank, which is each rank's binding when the launcher gave
     * every rank one equal block (a core, a socket), so then the lists of
     * all ranks agree. */
    {"bound a core per rank", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "8", NULL}, "1", "0-7",
     "0;1;2;3;4;5;6;7", "bound to 1 of the node's 8 CPUs", 1, 7},
    {"bound to its socket", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "4-7", "0-7",
     "0-3;4-7", "bound to 4", 1, 1},
    {"bound to one core, not the even split", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "1", "0-7",
     "0-3;1", "its device 1 uses them as they are", 1, 1},
    {"bound to another rank's socket", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "0", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "4-7", "0-7",
     "4-7;4-7", "bound to 4", 0, 1},
    {"node unknown: split the mask", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "0-3", NULL,
     "0-1;2-3", "takes share 1", 1, 1},
    {"mask outside the node list: split", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "0-3", "8-15",
     "0-1;2-3", "takes share 1", 1, 1},
    {"a cgroup's CPUs", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "8-11",
     "8-11", "8-9;10-11", "takes share", 1, 1},
    {"a mask with holes", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "0,2,4,6",
     "0,2,4,6", "0,2;4,6", "takes share", 1, 1},
    {"more ranks than CPUs: rank 2 of 3", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "2", "OMPI_COMM_WORLD_LOCAL_SIZE", "3", NULL}, "0-1", "0-1",
     "0;1;0", "3 local ranks (OMPI_COMM_WORLD_LOCAL_RANK) but only 2 CPUs: ranks share CPUs "
     "round-robin, local rank 2 runs on CPU 0", 2, 2},
    {"more ranks than CPUs: rank 1 of 3", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "3", NULL}, "4-5", "4-5",
     "4;5;4", "round-robin", 1, 2},
    {"blanks around auto", " host: auto ",
     {"MPI_LOCALRANKID", "1", "MPI_LOCALNRANKS", "2", NULL}, "0-7", "0-7", "0-3;4-7", "of 2",
     1, 1},
    {"combined with other items", "host:0;host:auto;host:0",
     {"MPI_LOCALRANKID", "1", "MPI_LOCALNRANKS", "2", NULL}, "0-7", "0-7", "0;0-3;4-7;0",
     "of 2", 2, 1},
    {"process devices", "proc:auto",
     {"MPI_LOCALRANKID", "1", "MPI_LOCALNRANKS", "2", NULL}, "0-7", "0-7", "0-3;4-7", "of 2",
     1, 1},
    /* Other layouts: the node's ranks grouped in blocks over the devices. */
    {"host*2 shared by 4 ranks: rank 3", "host*2",
     {"OMPI_COMM_WORLD_LOCAL_RANK", "3", "OMPI_COMM_WORLD_LOCAL_SIZE", "4", NULL}, "0-7", "0-7",
     "0-3;4-7", "", 1, 0},
    {"host*2 shared by 4 ranks: rank 1", "host*2",
     {"OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "4", NULL}, "0-7", "0-7",
     "0-3;4-7", "", 0, 0},
    {"host*4, 2 ranks: rank 1", "host*4",
     {"MPI_LOCALRANKID", "1", "MPI_LOCALNRANKS", "2", NULL}, "0-7", "0-7", "0-1;2-3;4-5;6-7",
     "", 2, 0},
    {"host*2 without a launcher", "host*2", {NULL}, "0-7", "0-7", "0-3;4-7", "", 0, 0},
    {"other layouts ignore a bad launcher variable", "host*2",
     {"OMPI_COMM_WORLD_LOCAL_RANK", "x", NULL}, "0-7", "0-7", "0-3;4-7", "", -1, 0},
    /* Errors name the variable. */
    {"size missing", NULL, {"OMPI_COMM_WORLD_LOCAL_RANK", "0", NULL}, "0-7", "0-7", NULL,
     "OMPI_COMM_WORLD_LOCAL_SIZE=\"<unset>\"", 0, 0},
    {"rank not a number", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "one", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "0-7",
     "0-7", NULL, "OMPI_COMM_WORLD_LOCAL_RANK=\"one\"", 0, 0},
    {"negative rank", NULL, {"MPI_LOCALRANKID", "-1", "MPI_LOCALNRANKS", "2", NULL}, "0-7",
     "0-7", NULL, "MPI_LOCALRANKID=\"-1\"", 0, 0},
    {"rank beyond size", NULL,
     {"OMPI_COMM_WORLD_LOCAL_RANK", "2", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL}, "0-7", "0-7",
     NULL, "OMPI_COMM_WORLD_LOCAL_RANK=2 is not a local rank below OMPI_COMM_WORLD_LOCAL_SIZE=2",
     0, 0},
    {"size zero", NULL, {"MPI_LOCALRANKID", "0", "MPI_LOCALNRANKS", "0", NULL}, "0-7", "0-7",
     NULL, "MPI_LOCALNRANKS=0", 0, 0},
    {"Slurm list malformed", NULL,
     {"SLURM_LOCALID", "0", "SLURM_STEP_TASKS_PER_NODE", "2(x", NULL}, "0-7", "0-7", NULL,
     "SLURM_STEP_TASKS_PER_NODE=\"2(x\"", 0, 0},
    {"Slurm node beyond the list", NULL,
     {"SLURM_LOCALID", "0", "SLURM_NODEID", "4", "SLURM_STEP_TASKS_PER_NODE", "2(x3),1", NULL},
     "0-7", "0-7", NULL, "no task count for node 4", 0, 0},
    {"Slurm node id not a number", NULL,
     {"SLURM_LOCALID", "0", "SLURM_NODEID", "n1", "SLURM_STEP_TASKS_PER_NODE", "2", NULL},
     "0-7", "0-7", NULL, "SLURM_NODEID=\"n1\"", 0, 0},
    {"auto with a suffix", "host:auto2", {NULL}, "0-7", "0-7", NULL, "host:auto", 0, 0},
    {"auto*2 is not a thing", "host:auto*2", {NULL}, "0-7", "0-7", NULL, "malformed", 0, 0},
};

static void expect_auto_case(const void *arg)
{
    const auto_case *c = arg;
    set_launcher(c->env);
    pymic_device_spec mask = cpu_list(c->mask), node = cpu_list(c->node);
    pymic_host_cpus cpus = {mask.cpus, mask.ncpus, node.cpus, node.ncpus};
    pymic_device_spec *specs = NULL;
    int count = -1;
    char why[256] = "", note[256] = "";
    int status = pymic_parse_devices(c->layout ? c->layout : "host:auto", &cpus, &specs, &count,
                                     why, sizeof why, note, sizeof note);
    const char *said = c->expect ? note : why;
    if (!strstr(said, c->message))
        fprintf(stderr, "  %s: \"%s\" lacks \"%s\"\n", c->label, said, c->message);
    CHECK(strstr(said, c->message) != NULL);
    if (!c->expect) {
        CHECK(status == PYMIC_ERR_CONFIG);
    } else {
        CHECK(status == PYMIC_OK);
        char expect[64];
        snprintf(expect, sizeof expect, "%s", c->expect);
        int device = 0;
        char *save = NULL;
        for (char *item = strtok_r(expect, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
            pymic_device_spec want = cpu_list(item);
            CHECK(device < count);
            if (status == PYMIC_OK && device < count) {
                CHECK(specs[device].ncpus == want.ncpus);
                CHECK(memcmp(specs[device].cpus, want.cpus,
                             sizeof *want.cpus * (size_t)want.ncpus) == 0);
            }
            free(want.cpus);
            device++;
        }
        CHECK(device == count);
        int own = -1, nlazy = 0;
        char local_why[256] = "";
        int local_status = pymic_local_device(specs, count, &own, local_why, sizeof local_why);
        if (c->own < 0) {
            /* Only the question of its own device fails, naming the variable. */
            CHECK(local_status == PYMIC_ERR_CONFIG);
            CHECK(strstr(local_why, "OMPI_COMM_WORLD_LOCAL_RANK") != NULL);
        } else {
            CHECK(local_status == PYMIC_OK && own == c->own);
        }
        for (int i = 0; i < count; i++) {
            nlazy += specs[i].lazy;
            CHECK(!(specs[i].own && specs[i].lazy));
            CHECK(!specs[i].own || i == c->own); /* at most one, the rank's */
        }
        if (nlazy != c->nlazy)
            fprintf(stderr, "  %s: %d lazy devices, expected %d\n", c->label, nlazy, c->nlazy);
        CHECK(nlazy == c->nlazy);
        pymic_free_device_specs(specs, count);
    }
    free(mask.cpus);
    free(node.cpus);
}

static void expect_slurm_lists(const void *arg)
{
    (void)arg;
    static const struct { const char *list; long node, tasks; } cases[] = {
        {"2(x3),1", 0, 2}, {"2(x3),1", 2, 2}, {"2(x3),1", 3, 1}, {"2(x3),1", 4, -1},
        {"4", 0, 4}, {"4", 1, -1}, {" 3 , 5", 1, 5}, {"", 0, -1}, {"2(x0)", 0, -1},
        {"2(y3)", 0, -1}, {"2x", 0, -1}, {"2,", 1, -1}, {"1,(x2)", 1, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        long got = slurm_tasks_on_node(cases[i].list, cases[i].node);
        if (got != cases[i].tasks)
            fprintf(stderr, "  \"%s\" node %ld: %ld tasks, expected %ld\n", cases[i].list,
                    cases[i].node, got, cases[i].tasks);
        CHECK(got == cases[i].tasks);
    }
}

/* The cpuset is looked up from the process's cgroup upwards: a made-up
 * tree where /a has the file and /a/b an empty one. */
static void expect_cpuset_upwards(const void *arg)
{
    (void)arg;
    char root[] = "/tmp/pymic_test_cgroupXXXXXX", dir[128], file[160], empty[160];
    CHECK(mkdtemp(root) != NULL);
    snprintf(dir, sizeof dir, "%s/a", root);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(dir, sizeof dir, "%s/a/b", root);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(file, sizeof file, "%s/a/cpuset.cpus.effective", root);
    FILE *out = fopen(file, "w");
    CHECK(out != NULL);
    if (out) {
        fputs("2-3,8\n", out);
        fclose(out);
    }
    snprintf(empty, sizeof empty, "%s/a/b/cpuset.cpus.effective", root);
    FILE *nothing = fopen(empty, "w");
    CHECK(nothing != NULL);
    if (nothing)
        fclose(nothing);
    pymic_device_spec spec = {0};
    char path[64] = "/a/b";
    CHECK(read_cpuset_upwards(root, path, "cpuset.cpus.effective", &spec));
    CHECK(spec.ncpus == 3 && spec.cpus && spec.cpus[0] == 2 && spec.cpus[2] == 8);
    free(spec.cpus);
    char missing[64] = "/a/b";
    CHECK(!read_cpuset_upwards(root, missing, "cpuset.effective_cpus", &spec));
    unlink(file);
    unlink(empty);
    rmdir(dir);
    snprintf(dir, sizeof dir, "%s/a", root);
    rmdir(dir);
    rmdir(root);
}

/* This machine's node CPUs include every CPU of the affinity mask. */
static void expect_node_cpus(const void *arg)
{
    (void)arg;
    int *node = NULL, nnode = 0;
    CHECK_OK(pymic_node_cpus(&node, &nnode));
    CHECK(nnode >= navail);
    for (int i = 0; i < navail; i++)
        CHECK(cpu_available(avail[i], node, nnode));
    free(node);
}

/* Through pymic_init: the engine reads the node's CPUs and the launcher,
 * and says what it chose at PYMIC_DEBUG=1. */
static void expect_auto_init(const void *arg)
{
    const char *const *env = arg;
    set_launcher(env);
    char path[] = "/tmp/pymic_test_autoXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    setenv("PYMIC_DEBUG", "1", 1);
    int status = pymic_init();
    fflush(stderr);
    dup2(saved, 2);
    char text[4096] = {0};
    CHECK(pread(fd, text, sizeof text - 1, 0) > 0);
    close(fd);
    unlink(path);
    CHECK_OK(status);

    /* What the parser makes of this machine (tested above) is what the
     * engine built. */
    cpu_set_t mask;
    CHECK(sched_getaffinity(0, sizeof mask, &mask) == 0);
    int now[CPU_SETSIZE], nnow = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mask))
            now[nnow++] = c;
    int *node = NULL, nnode = 0;
    CHECK_OK(pymic_node_cpus(&node, &nnode));
    pymic_host_cpus cpus = {now, nnow, node, nnode};
    pymic_device_spec *specs = NULL;
    int count = 0;
    char why[256], note[256];
    CHECK_OK(pymic_parse_devices("host:auto", &cpus, &specs, &count, why, sizeof why, note,
                                 sizeof note));
    int ndevices = 0, got[CPU_SETSIZE], own = -1, expect_own = -1;
    CHECK_OK(pymic_device_count(&ndevices));
    CHECK(ndevices == count);
    for (int d = 0; d < count && d < ndevices; d++) {
        CHECK(device_cpus(d, got) == specs[d].ncpus);
        CHECK(memcmp(got, specs[d].cpus, sizeof *got * (size_t)specs[d].ncpus) == 0);
        if (specs[d].own)
            expect_own = d;
    }
    CHECK_OK(pymic_local_device_index(&own));
    CHECK(own == expect_own);
    CHECK_STATUS(pymic_local_device_index(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    char line[300];
    snprintf(line, sizeof line, "PYMIC: %s\n", note);
    CHECK(strstr(text, line) != NULL);
    pymic_free_device_specs(specs, count);
    free(node);
}

/* Bound by the launcher to one CPU (sched_setaffinity stands in for it):
 * the rank's own device (local rank 1 of 2) is that CPU. */
static void expect_auto_bound(const void *arg)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(avail[navail - 1], &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    expect_auto_init(arg);
    int cpus[CPU_SETSIZE], own = -1;
    CHECK_OK(pymic_local_device_index(&own));
    CHECK(own == 1);
    CHECK(device_cpus(own, cpus) == 1 && cpus[0] == avail[navail - 1]);
}

/* Threads of this process, and processes it started (children of any of
 * its threads), from /proc. */
static int count_threads(void)
{
    int n = 0;
    DIR *dir = opendir("/proc/self/task");
    CHECK(dir != NULL);
    for (struct dirent *e; dir && (e = readdir(dir));)
        n += e->d_name[0] != '.';
    if (dir)
        closedir(dir);
    return n;
}

static int count_children(void)
{
    int n = 0;
    DIR *dir = opendir("/proc/self/task");
    CHECK(dir != NULL);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (e->d_name[0] == '.')
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
        FILE *file = fopen(path, "r");
        for (long pid; file && fscanf(file, "%ld", &pid) == 1;)
            n++;
        if (file)
            fclose(file);
    }
    if (dir)
        closedir(dir);
    return n;
}

/* Local rank 1 of 2 with proc:auto: a process device costs a device process
 * and a monitor thread, so what exists shows what was set up.  Only the
 * rank's own device is, at start; device 0 is listed and answers queries
 * without being set up, and is set up by its first stream. */
static void expect_auto_lazy(const void *arg)
{
    (void)arg;
    static const char *const rank_one[] = {
        "OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL};
    set_launcher(rank_one);
    int threads = count_threads();
    CHECK(count_children() == 0);
    CHECK_OK(pymic_init());
    int count = 0, own = -1;
    CHECK_OK(pymic_device_count(&count));
    CHECK_OK(pymic_local_device_index(&own));
    CHECK(count == 2 && own == 1);
    CHECK(count_children() == 1);
    int threads_own = count_threads();
    CHECK(threads_own > threads); /* the own device's monitor */
    /* Queries leave device 0 as it is. */
    pymic_device_info info;
    int cpus[CPU_SETSIZE], ncpus = 0;
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK_OK(pymic_device_get_cpus(0, cpus, CPU_SETSIZE, &ncpus));
    CHECK_OK(pymic_device_sync(0));
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
    CHECK_OK(pymic_device_set_memory_limit(0, 0));
    CHECK(strcmp(info.kind, "proc") == 0 && ncpus >= 1);
    CHECK(count_children() == 1);
    CHECK(count_threads() == threads_own);
    /* Used, it is set up like the own device was. */
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK(count_children() == 2);
    CHECK_OK(pymic_stream_destroy(s));
}

/* Two threads using a lazy device at once: it is set up once, and both
 * get working streams and memory (TSan checks the set-up is race-free). */
static void *use_device_zero(void *arg)
{
    int *ok = arg;
    pymic_stream *s = NULL;
    void *p = NULL;
    *ok = pymic_stream_create(0, &s) == PYMIC_OK && pymic_mem_alloc(0, 4096, 0, &p) == PYMIC_OK;
    char bytes[64] = {1};
    if (*ok)
        *ok = pymic_memcpy_h2d(s, p, 0, bytes, sizeof bytes) == PYMIC_OK &&
              pymic_mem_free(s, p) == PYMIC_OK && pymic_stream_sync(s) == PYMIC_OK &&
              pymic_stream_destroy(s) == PYMIC_OK;
    return NULL;
}

static void expect_auto_lazy_concurrent(const void *arg)
{
    (void)arg;
    static const char *const rank_one[] = {
        "MPI_LOCALRANKID", "1", "MPI_LOCALNRANKS", "2", NULL};
    set_launcher(rank_one);
    CHECK_OK(pymic_init());
    pthread_t threads[2];
    int ok[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&threads[i], NULL, use_device_zero, &ok[i]) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK(ok[0] && ok[1]);
}

static void run_auto_cases(void)
{
    for (size_t i = 0; i < sizeof auto_cases / sizeof *auto_cases; i++)
        in_child(auto_cases[i].label, auto_cases[i].layout ? auto_cases[i].layout : "host:auto",
                 expect_auto_case, &auto_cases[i]);
    in_child("Slurm task lists", NULL, expect_slurm_lists, NULL);
    in_child("cgroup cpuset lookup", NULL, expect_cpuset_upwards, NULL);
    in_child("node CPUs", NULL, expect_node_cpus, NULL);

    static const char *const no_launcher[] = {NULL};
    in_child("host:auto without a launcher", "host:auto", expect_one_device_on_all, NULL);
    in_child("host:auto without a launcher, init", "host:auto", expect_auto_init, no_launcher);
    static const char *const last_of_two[] = {
        "OMPI_COMM_WORLD_LOCAL_RANK", "1", "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL};
    in_child("host:auto, rank 1 of 2, init", "host:auto", expect_auto_init, last_of_two);
    char rank[16], size[16];
    snprintf(rank, sizeof rank, "%d", navail);
    snprintf(size, sizeof size, "%d", navail + 1);
    const char *const crowded[] = {
        "MPI_LOCALRANKID", rank, "MPI_LOCALNRANKS", size, NULL};
    in_child("host:auto, more ranks than CPUs, init", "host:auto", expect_auto_init, crowded);
    in_child("host:auto, bound, init", "host:auto", expect_auto_bound, last_of_two);
    in_child("host:auto, a lazy device used by two threads at once", "host:auto",
             expect_auto_lazy_concurrent, NULL);
    in_child("proc:auto sets up other ranks' devices on first use", "proc:auto",
             expect_auto_lazy, NULL);
    static const char *const bad_pair[2] = {"OMPI_COMM_WORLD_LOCAL_RANK", "zero"};
    in_child("host:auto, bad launcher variable", "host:auto", expect_bad_variable, bad_pair);
}

/* "proc" items parse like "host" items and give process devices, alone
 * or mixed with host items. */
static void test_device_kinds(void)
{
    pymic_device_spec mask = cpu_list("0-7");
    pymic_host_cpus cpus = {mask.cpus, mask.ncpus, NULL, 0};
    pymic_device_spec *specs = NULL;
    int count = 0;
    char why[256], note[256];
    CHECK_OK(pymic_parse_devices("host:0;proc:1-2;proc*2; proc ", &cpus, &specs, &count, why,
                                 sizeof why, note, sizeof note));
    static const pymic_backend_ops *const kinds[] = {
        &pymic_host_backend, &pymic_proc_backend, &pymic_proc_backend, &pymic_proc_backend,
        &pymic_proc_backend};
    static const int ncpus[] = {1, 2, 4, 4, 8};
    CHECK(count == 5);
    for (int i = 0; i < count && i < 5; i++) {
        CHECK(specs[i].ops == kinds[i]);
        CHECK(specs[i].ncpus == ncpus[i]);
    }
    CHECK(count >= 2 && specs[1].cpus[0] == 1 && specs[1].cpus[1] == 2);
    pymic_free_device_specs(specs, count);
    CHECK_OK(pymic_parse_devices("host*2", &cpus, &specs, &count, why, sizeof why, note,
                                 sizeof note));
    CHECK(count == 2 && specs[0].ops == &pymic_host_backend &&
          specs[1].ops == &pymic_host_backend);
    pymic_free_device_specs(specs, count);
    static const char *const bad[] = {"procs", "proc*0", "proc:", "proc:9", "process", "proc*"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        specs = NULL;
        CHECK(pymic_parse_devices(bad[i], &cpus, &specs, &count, why, sizeof why, note,
                                  sizeof note) == PYMIC_ERR_CONFIG);
    }
    CHECK(pymic_parse_devices("gpu", &cpus, &specs, &count, why, sizeof why, note,
                              sizeof note) == PYMIC_ERR_CONFIG);
    CHECK(strstr(why, "\"proc\"") != NULL);
    free(mask.cpus);
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
        {"PYMIC_KERNEL_TIMEOUT", "soon"}, {"PYMIC_KERNEL_TIMEOUT", "-1"},
        {"PYMIC_KERNEL_TIMEOUT", "1e9"},  {"PYMIC_CHECK", "everything"},
    };
    for (size_t i = 0; i < sizeof bad_vars / sizeof *bad_vars; i++)
        in_child("bad variable", NULL, expect_bad_variable, bad_vars[i]);
    run_auto_cases();
    test_device_kinds();
    return check_finish();
}
