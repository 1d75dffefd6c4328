/*
 * config.c -- parsing of PYMIC_DEVICES and size strings, and what
 * "host:auto" needs to know about the node: the MPI launcher's local rank
 * and the node's CPUs.
 *
 * Grammar of PYMIC_DEVICES (items separated by ';', blanks around tokens
 * ignored):
 *     item  := kind | kind "*" N | kind ":" list | kind ":auto" | kind ":" spec
 *     list  := range ("," range)*
 *     range := cpu | cpu "-" cpu
 * `kind` names a backend (registry.c: "host", "proc" or a plugin's name);
 * lists and auto are for backends with cpu_specs (host, proc), `spec` for
 * one with a parse_spec (backend.h).
 * Every CPU must be one the process may run on (its affinity mask), so a
 * device never names a core the worker could not be pinned to -- except
 * the entries host:auto makes for the other ranks of a node when the
 * launcher bound each rank to its own cores (see resolve_auto).
 *
 * This file uses nothing else of the engine but the backend registry, so
 * tests/c/test_config.c can compile it in (with registry.c) and call its
 * internals with made-up CPU lists.
 */
#include "engine.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More devices than this is certainly a typo ("host*100000"). */
#define PYMIC_MAX_DEVICES 1024

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parse a non-negative decimal integer; NULL if there is none. */
static const char *parse_uint(const char *p, long *value)
{
    p = skip_blanks(p);
    if (!isdigit((unsigned char)*p))
        return NULL;
    errno = 0;
    char *end;
    long v = strtol(p, &end, 10);
    if (errno != 0 || v > 1000000)
        return NULL;
    *value = v;
    return skip_blanks(end);
}

/* parse_uint skips blanks after a number, which may run past an item's
 * end that was trimmed of trailing blanks: only blanks lie beyond it. */
static const char *clamp(const char *p, const char *end)
{
    return (p && p > end) ? end : p;
}

static bool cpu_available(long cpu, const int *avail, int navail)
{
    for (int i = 0; i < navail; i++)
        if (avail[i] == cpu)
            return true;
    return false;
}

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Sort and remove duplicates in place; returns the new count. */
static int sort_unique(int *cpus, int n)
{
    qsort(cpus, (size_t)n, sizeof *cpus, compare_ints);
    int out = 0;
    for (int i = 0; i < n; i++)
        if (out == 0 || cpus[out - 1] != cpus[i])
            cpus[out++] = cpus[i];
    return out;
}

static int set_why(char *why, size_t why_len, const char *fmt, const char *item)
{
    snprintf(why, why_len, fmt, item);
    return PYMIC_ERR_CONFIG;
}

/* Parse "0-3,6" in [p, end) into spec; with `avail` NULL any CPU number is
 * accepted (the kernel's own lists, e.g. /sys/devices/system/cpu/online). */
static int parse_cpu_list(const char *p, const char *end, const int *avail, int navail,
                          pymic_device_spec *spec, char *why, size_t why_len)
{
    int cap = 16, n = 0;
    int *cpus = malloc(sizeof *cpus * (size_t)cap);
    if (!cpus)
        return set_why(why, why_len, "%s", "out of memory");
    for (;;) {
        long lo, hi;
        p = clamp(parse_uint(p, &lo), end);
        if (!p)
            goto bad;
        hi = lo;
        if (p < end && *p == '-') {
            p = clamp(parse_uint(p + 1, &hi), end);
            if (!p || hi < lo)
                goto bad;
        }
        for (long c = lo; c <= hi; c++) {
            if (avail && !cpu_available(c, avail, navail)) {
                char cpu_text[32];
                snprintf(cpu_text, sizeof cpu_text, "%ld", c);
                free(cpus);
                return set_why(why, why_len,
                               "CPU %s is not in the process affinity mask", cpu_text);
            }
            if (n == cap) {
                cap *= 2;
                int *grown = realloc(cpus, sizeof *cpus * (size_t)cap);
                if (!grown)
                    goto bad;
                cpus = grown;
            }
            cpus[n++] = (int)c;
        }
        if (p == end)
            break;
        if (*p != ',')
            goto bad;
        p++;
    }
    spec->ncpus = sort_unique(cpus, n);
    spec->cpus = cpus;
    return PYMIC_OK;
bad:
    free(cpus);
    return set_why(why, why_len, "%s",
                   "malformed CPU list (expected e.g. \"host:0-3,6\" or \"host:auto\")");
}

static int copy_cpus(pymic_device_spec *spec, const int *cpus, int n)
{
    spec->cpus = malloc(sizeof *cpus * (size_t)n);
    if (!spec->cpus)
        return PYMIC_ERR_CONFIG;
    memcpy(spec->cpus, cpus, sizeof *cpus * (size_t)n);
    spec->ncpus = n;
    return PYMIC_OK;
}

/* Split the available CPUs evenly over `n` devices; with more devices than
 * CPUs each device gets one CPU, handed out round-robin. */
static int split_cpus(long n, const int *avail, int navail, pymic_device_spec *specs)
{
    for (long i = 0; i < n; i++) {
        int status;
        if (n <= navail) {
            int first = (int)(i * navail / n), last = (int)((i + 1) * navail / n);
            status = copy_cpus(&specs[i], avail + first, last - first);
        } else {
            status = copy_cpus(&specs[i], avail + (i % navail), 1);
        }
        if (status != PYMIC_OK)
            return status;
    }
    return PYMIC_OK;
}

/* ---------------------------------------------------------- host:auto */

/* Where this process sits among the MPI ranks of its node, as its launcher
 * says in the environment. */
typedef struct local_rank {
    long rank, size;      /* size 0: no launcher variables found */
    const char *rank_var; /* the variable the rank came from, for messages */
} local_rank;

/* A launcher variable holding a non-negative integer; false (with the reason
 * in `why`) when it is malformed. */
static bool read_count_variable(const char *name, long *value, char *why, size_t why_len)
{
    const char *text = getenv(name);
    const char *end = text ? parse_uint(text, value) : NULL;
    if (end && *end == '\0')
        return true;
    snprintf(why, why_len, "%s=\"%s\" is not a non-negative integer", name,
             text ? text : "<unset>");
    return false;
}

/* Slurm compresses its tasks-per-node lists: "2(x3),1" is 2,2,2,1.  The
 * count of node `node`, or -1 for a malformed list or a node beyond it. */
static long slurm_tasks_on_node(const char *text, long node)
{
    const char *p = text;
    for (;;) {
        long tasks, repeat = 1;
        p = parse_uint(p, &tasks);
        if (!p)
            return -1;
        if (p[0] == '(' && p[1] == 'x') {
            p = parse_uint(p + 2, &repeat);
            if (!p || *p != ')' || repeat < 1)
                return -1;
            p = skip_blanks(p + 1);
        }
        if (*p != ',' && *p != '\0')
            return -1;
        if (node < repeat)
            return tasks;
        node -= repeat;
        if (*p == '\0')
            return -1;
        p++;
    }
}

static bool variable_set(const char *name)
{
    const char *text = getenv(name);
    return text && *text;
}

/* The local rank and the number of ranks on this node, from the first
 * launcher whose variables are set.  MPI launchers come before Slurm: an
 * mpirun inside a Slurm allocation inherits the batch script's SLURM_*.
 * Slurm counts only in an srun step (SLURM_STEP_TASKS_PER_NODE): a batch
 * script may carry SLURM_LOCALID and the job's SLURM_TASKS_PER_NODE, but it
 * is one process, not one of the tasks those count. */
static int read_local_rank(local_rank *out, char *why, size_t why_len)
{
    static const char *const mpi_launchers[][2] = {
        {"OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"}, /* Open MPI */
        {"MPI_LOCALRANKID", "MPI_LOCALNRANKS"},                       /* MPICH/Hydra, Intel MPI */
    };
    *out = (local_rank){0, 0, NULL};
    const char *rank_var = NULL, *size_var = NULL;
    for (size_t i = 0; i < sizeof mpi_launchers / sizeof *mpi_launchers && !rank_var; i++)
        if (variable_set(mpi_launchers[i][0])) {
            rank_var = mpi_launchers[i][0];
            size_var = mpi_launchers[i][1];
        }
    long rank, size;
    if (rank_var) {
        if (!read_count_variable(rank_var, &rank, why, why_len) ||
            !read_count_variable(size_var, &size, why, why_len))
            return PYMIC_ERR_CONFIG;
    } else if (variable_set("SLURM_LOCALID") && variable_set("SLURM_STEP_TASKS_PER_NODE")) {
        rank_var = "SLURM_LOCALID";
        size_var = "SLURM_STEP_TASKS_PER_NODE";
        long node = 0;
        if (!read_count_variable(rank_var, &rank, why, why_len) ||
            (variable_set("SLURM_NODEID") &&
             !read_count_variable("SLURM_NODEID", &node, why, why_len)))
            return PYMIC_ERR_CONFIG;
        const char *list = getenv(size_var);
        size = slurm_tasks_on_node(list, node);
        if (size < 0) {
            snprintf(why, why_len, "%s=\"%s\" gives no task count for node %ld (SLURM_NODEID)",
                     size_var, list, node);
            return PYMIC_ERR_CONFIG;
        }
    } else {
        return PYMIC_OK; /* no launcher: size 0 */
    }
    if (size < 1 || rank >= size) {
        snprintf(why, why_len, "%s=%ld is not a local rank below %s=%ld", rank_var, rank,
                 size_var, size);
        return PYMIC_ERR_CONFIG;
    }
    *out = (local_rank){rank, size, rank_var};
    return PYMIC_OK;
}

/* The launcher (or taskset, numactl) already gave this process a share of
 * the node: its affinity mask is a strict subset of the node's CPUs. */
static bool bound_to_share(const pymic_host_cpus *cpus)
{
    if (!cpus->node || cpus->navail >= cpus->nnode)
        return false;
    for (int i = 0; i < cpus->navail; i++)
        if (!cpu_available(cpus->avail[i], cpus->node, cpus->nnode))
            return false;
    return true;
}

/* host:auto: one device per local rank, the same list on every rank of
 * the node, so that pyMIC-era codes can take devices[local_rank].  Entry i
 * is rank i's share; this rank's own entry (`own`) is its launcher binding
 * when it has one, else share `local->rank` of an equal split of its mask;
 * the other entries are `lazy`: their backend is set up only if this
 * process ever uses them.  `specs` has room for local->size devices (one
 * without a launcher).  On success `note` says which rule applied, for the
 * debug log. */
static int resolve_auto(const pymic_host_cpus *cpus, const local_rank *local,
                        pymic_device_spec *specs, char *note, size_t note_len)
{
    const int *avail = cpus->avail;
    long navail = cpus->navail;
    long rank = local->rank, size = local->size;
    int status;
    if (size == 0) {
        snprintf(note, note_len, "host:auto: no MPI launcher's local rank "
                 "(OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID of an srun step), "
                 "so one device on all %ld CPUs, as \"host\"", navail);
        status = copy_cpus(&specs[0], avail, (int)navail);
        specs[0].own = true;
    } else if (bound_to_share(cpus)) {
        /* The other ranks' bindings are not known here: their entries are
         * the node's CPUs split by local rank, which is what binding one
         * equal block per rank (a core, a socket) gives them. */
        snprintf(note, note_len, "host:auto: local rank %ld of %ld (%s) is bound to %ld of the "
                 "node's %d CPUs; its device %ld uses them as they are, devices of the other "
                 "local ranks are the node's CPUs split in %ld",
                 rank, size, local->rank_var, navail, cpus->nnode, rank, size);
        status = split_cpus(size, cpus->node, cpus->nnode, specs);
        if (status == PYMIC_OK) {
            free(specs[rank].cpus);
            specs[rank].cpus = NULL;
            status = copy_cpus(&specs[rank], avail, (int)navail);
        }
    } else if (size <= navail) {
        long first = rank * navail / size, last = (rank + 1) * navail / size;
        snprintf(note, note_len, "host:auto: local rank %ld of %ld (%s) takes share %ld, %ld "
                 "CPUs, of the %ld CPUs in its affinity mask (devices 0-%ld, one per local "
                 "rank)", rank, size, local->rank_var, rank, last - first, navail, size - 1);
        status = split_cpus(size, avail, (int)navail, specs);
    } else {
        /* As host*N does with more devices than CPUs. */
        snprintf(note, note_len, "host:auto: %ld local ranks (%s) but only %ld CPUs: ranks share "
                 "CPUs round-robin, local rank %ld runs on CPU %d", size, local->rank_var,
                 navail, rank, avail[rank % navail]);
        status = split_cpus(size, avail, (int)navail, specs);
    }
    if (status != PYMIC_OK) {
        set_why(note, note_len, "%s", "out of memory");
        return status;
    }
    for (long i = 0; i < (size ? size : 1); i++) {
        specs[i].own = i == rank;
        specs[i].lazy = !specs[i].own;
    }
    return PYMIC_OK;
}

static int grow_specs(pymic_device_spec **specs, int *cap, int need)
{
    if (need <= *cap)
        return PYMIC_OK;
    int new_cap = *cap ? *cap : 4;
    while (new_cap < need)
        new_cap *= 2;
    pymic_device_spec *grown = realloc(*specs, sizeof **specs * (size_t)new_cap);
    if (!grown)
        return PYMIC_ERR_CONFIG;
    memset(grown + *cap, 0, sizeof *grown * (size_t)(new_cap - *cap));
    *specs = grown;
    *cap = new_cap;
    return PYMIC_OK;
}

static bool is_word(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) == n && strncmp(p, word, n) == 0;
}

/* Parse one ';'-separated item [p, end) and append its devices; a note on
 * how host:auto resolved goes to `note`. */
static int parse_item(const char *p, const char *end, const pymic_host_cpus *cpus,
                      pymic_device_spec **specs, int *count, int *cap,
                      char *why, size_t why_len, char *note, size_t note_len)
{
    const int *avail = cpus->avail;
    int navail = cpus->navail;
    p = skip_blanks(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    /* The backend's name, then what it accepts after it. */
    const char *name_end = p;
    while (name_end < end && (islower((unsigned char)*name_end) ||
                              isdigit((unsigned char)*name_end) || *name_end == '_'))
        name_end++;
    char name[40];
    if (name_end == p || name_end - p >= (long)sizeof name)
        return set_why(why, why_len, "%s", "expected a device kind such as \"host\", "
                       "\"proc\" or a backend plugin's name");
    memcpy(name, p, (size_t)(name_end - p));
    name[name_end - p] = '\0';
    const pymic_backend_ops *ops = pymic_backend_find(name, why, why_len);
    if (!ops)
        return PYMIC_ERR_CONFIG;
    p = name_end;
    long ndev = 1;
    bool explicit_list = false, automatic = false;
    const char *backend_spec = NULL;
    char shapes[256];
    if (ops->cpu_specs)
        snprintf(shapes, sizeof shapes, "\"%s\", \"%s*N\", \"%s:CPUS\" or \"%s:auto\"",
                 name, name, name, name);
    else
        snprintf(shapes, sizeof shapes, "\"%s\", \"%s*N\"%s%s%s", name, name,
                 ops->parse_spec ? " or \"" : "", ops->parse_spec ? name : "",
                 ops->parse_spec ? ":SPEC\"" : "");
    if (p < end && *p == '*') {
        p = clamp(parse_uint(p + 1, &ndev), end);
        if (!p || p != end || ndev < 1) {
            snprintf(why, why_len, "\"%s*N\" needs a positive integer N", name);
            return PYMIC_ERR_CONFIG;
        }
    } else if (p < end && *p == ':' && ops->cpu_specs) {
        p++;
        automatic = is_word(skip_blanks(p), end, "auto");
        explicit_list = !automatic;
    } else if (p < end && *p == ':' && ops->parse_spec) {
        backend_spec = skip_blanks(p + 1);
    } else if (p != end) {
        snprintf(why, why_len, "expected %s", shapes);
        return PYMIC_ERR_CONFIG;
    }
    local_rank local = {0, 0, NULL};
    if (automatic) {
        if (read_local_rank(&local, why, why_len) != PYMIC_OK)
            return PYMIC_ERR_CONFIG;
        ndev = local.size ? local.size : 1;
    }
    if (*count + ndev > PYMIC_MAX_DEVICES)
        return set_why(why, why_len, "%s", "too many devices (at most 1024)");
    if (grow_specs(specs, cap, *count + (int)ndev) != PYMIC_OK)
        return set_why(why, why_len, "%s", "out of memory");
    int status;
    if (automatic) {
        status = resolve_auto(cpus, &local, &(*specs)[*count], note, note_len);
        if (status != PYMIC_OK)
            snprintf(why, why_len, "%s", note);
    } else if (explicit_list) {
        status = parse_cpu_list(p, end, avail, navail, &(*specs)[*count], why, why_len);
    } else if (backend_spec) {
        char *text = strndup(backend_spec, (size_t)(end - backend_spec));
        char reason[256] = "";
        if (!text) {
            status = set_why(why, why_len, "%s", "out of memory");
        } else if (!ops->parse_spec(text, reason, sizeof reason)) {
            snprintf(why, why_len, "\"%s:%s\": %s", name, text, reason);
            free(text);
            status = PYMIC_ERR_CONFIG;
        } else {
            status = split_cpus(1, avail, navail, &(*specs)[*count]);
            (*specs)[*count].spec = text;
        }
    } else {
        status = split_cpus(ndev, avail, navail, &(*specs)[*count]);
        if (status != PYMIC_OK)
            set_why(why, why_len, "%s", "out of memory");
    }
    if (status != PYMIC_OK)
        return status;
    for (int i = 0; i < (int)ndev; i++)
        (*specs)[*count + i].ops = ops;
    *count += (int)ndev;
    return PYMIC_OK;
}

int pymic_parse_devices(const char *text, const pymic_host_cpus *cpus,
                        pymic_device_spec **specs_out, int *count_out, char *why, size_t why_len,
                        char *note, size_t note_len)
{
    if (note_len)
        note[0] = '\0';
    if (cpus->navail < 1)
        return set_why(why, why_len, "%s", "the process may run on no CPU");
    if (!text || *skip_blanks(text) == '\0')
        text = "host";
    pymic_device_spec *specs = NULL;
    int count = 0, cap = 0;
    const char *p = text;
    for (;;) {
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        int status = parse_item(p, end, cpus, &specs, &count, &cap, why, why_len, note,
                                note_len);
        if (status != PYMIC_OK) {
            pymic_free_device_specs(specs, cap);
            return status;
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    *specs_out = specs;
    *count_out = count;
    return PYMIC_OK;
}

int pymic_local_device(const pymic_device_spec *specs, int count, int *index, char *why,
                       size_t why_len)
{
    for (int i = 0; i < count; i++)
        if (specs[i].own) {
            *index = i;
            return PYMIC_OK;
        }
    /* No host:auto: ranks grouped in equal blocks per device, as codes
     * that share N cards among a node's ranks number them. */
    local_rank local;
    if (read_local_rank(&local, why, why_len) != PYMIC_OK)
        return PYMIC_ERR_CONFIG;
    *index = local.size ? (int)(local.rank * count / local.size) : 0;
    return PYMIC_OK;
}

void pymic_free_device_specs(pymic_device_spec *specs, int count)
{
    if (!specs)
        return;
    for (int i = 0; i < count; i++) {
        free(specs[i].cpus);
        free(specs[i].spec);
    }
    free(specs);
}

/* --------------------------------------------------- the node's CPUs */

/* The first line of a small file, without its newline; false if unreadable. */
static bool read_first_line(const char *path, char *line, size_t len)
{
    FILE *file = fopen(path, "r");
    if (!file)
        return false;
    bool ok = fgets(line, (int)len, file) != NULL;
    fclose(file);
    if (ok)
        line[strcspn(line, "\n")] = '\0';
    return ok;
}

/* A kernel CPU list ("0-3,8-11") read from `path`, as a spec. */
static bool read_cpu_list_file(const char *path, pymic_device_spec *spec)
{
    char text[4096], why[128];
    if (!read_first_line(path, text, sizeof text) || text[0] == '\0')
        return false;
    return parse_cpu_list(text, text + strlen(text), NULL, 0, spec, why, sizeof why) == PYMIC_OK;
}

/* The cpuset file of cgroup `path` under `root`, or of its nearest ancestor
 * that has one: in cgroup v2 a cgroup without the cpuset controller has no
 * such file, and in a container /proc/self/cgroup may name the host's path
 * while /sys/fs/cgroup shows the container's own cgroup as its root. */
static bool read_cpuset_upwards(const char *root, char *path, const char *file,
                                pymic_device_spec *spec)
{
    char file_path[1400];
    for (;;) {
        snprintf(file_path, sizeof file_path, "%s%s/%s", root, path, file);
        if (read_cpu_list_file(file_path, spec))
            return true;
        char *slash = strrchr(path, '/');
        if (!slash)
            return false;
        *slash = '\0'; /* the parent: "/a/b" -> "/a" -> "" */
    }
}

/* The cpuset of this process's cgroup (v1's "cpuset" hierarchy first,
 * else the unified v2 one). */
static bool read_cgroup_cpuset(pymic_device_spec *spec)
{
    char v1[1024], v2[1024];
    int found = pymic_cgroup_paths("/", "cpuset", v1, v2, sizeof v1);
    return ((found & PYMIC_CGROUP_V1) &&
            read_cpuset_upwards("/sys/fs/cgroup/cpuset", v1, "cpuset.effective_cpus", spec)) ||
           ((found & PYMIC_CGROUP_V2) &&
            read_cpuset_upwards("/sys/fs/cgroup", v2, "cpuset.cpus.effective", spec));
}

int pymic_node_cpus(int **cpus_out, int *count_out)
{
    pymic_device_spec spec = {0};
    if (!read_cgroup_cpuset(&spec) &&
        !read_cpu_list_file("/sys/devices/system/cpu/online", &spec))
        return PYMIC_ERR_SYSTEM;
    *cpus_out = spec.cpus;
    *count_out = spec.ncpus;
    return PYMIC_OK;
}

bool pymic_parse_size(const char *text, size_t *bytes)
{
    const char *p = skip_blanks(text);
    if (!isdigit((unsigned char)*p))
        return false;
    errno = 0;
    char *end;
    unsigned long long value = strtoull(p, &end, 10);
    if (errno != 0)
        return false;
    p = skip_blanks(end);
    unsigned shift = 0;
    switch (toupper((unsigned char)*p)) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    case '\0': break;
    default: return false;
    }
    if (shift) {
        p++;
        if (toupper((unsigned char)*p) == 'I')
            p++;
        if (toupper((unsigned char)*p) == 'B')
            p++;
    } else if (toupper((unsigned char)*p) == 'B') {
        p++;
    }
    if (*skip_blanks(p) != '\0')
        return false;
    if (shift && value > (SIZE_MAX >> shift))
        return false;
    *bytes = (size_t)(value << shift);
    return true;
}
