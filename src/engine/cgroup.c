/*
 * cgroup.c -- what the process's cgroup says: where it is (for the cpuset
 * that host:auto splits, config.c) and the memory limit a container puts
 * on the process.
 *
 * Physical memory is the wrong default limit inside a container: the
 * kernel OOM-kills a process that passes its cgroup's limit, long before
 * physical memory runs out.  The limit of every cgroup from the process's
 * own up to the root applies, so the smallest one counts.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Larger values mean "no limit" (cgroup v1 writes 2^63 rounded to pages). */
#define UNLIMITED_FROM ((size_t)1 << 60)

/* The number in `file`, or 0 if it is absent, "max" or not a number. */
static size_t read_limit(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    char text[64] = "";
    bool got = fgets(text, sizeof text, f) != NULL;
    fclose(f);
    if (!got)
        return 0;
    char *end;
    unsigned long long value = strtoull(text, &end, 10);
    if (end == text || (*end != '\n' && *end != '\0') || value >= UNLIMITED_FROM)
        return 0;
    return (size_t)value;
}

/* Smallest limit named `leaf` in `dir` and each of its parents up to
 * `top` (a prefix of dir); 0 if none has one. */
static size_t smallest_up_to(char *dir, size_t top, const char *leaf)
{
    size_t best = 0;
    for (;;) {
        char file[4300];
        snprintf(file, sizeof file, "%s/%s", dir, leaf);
        size_t limit = read_limit(file);
        if (limit && (!best || limit < best))
            best = limit;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < top)
            return best;
        *slash = '\0';
    }
}

/* Whether a comma-separated controller list names `controller`. */
static bool lists_controller(const char *controllers, const char *controller)
{
    size_t want = strlen(controller);
    for (const char *c = controllers; *c;) {
        size_t len = strcspn(c, ",");
        if (len == want && strncmp(c, controller, len) == 0)
            return true;
        c += len;
        if (*c)
            c++;
    }
    return false;
}

int pymic_cgroup_paths(const char *root, const char *controller, char *v1, char *v2, size_t len)
{
    size_t root_len = strlen(root);
    while (root_len > 0 && root[root_len - 1] == '/')
        root_len--;
    char file[4200];
    snprintf(file, sizeof file, "%.*s/proc/self/cgroup", (int)root_len, root);
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    int found = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "hierarchy-id:controllers:path" */
        char *first = strchr(line, ':');
        char *second = first ? strchr(first + 1, ':') : NULL;
        if (!second)
            continue;
        *second = '\0';
        const char *controllers = first + 1, *path = second + 1;
        if (*controllers == '\0' && strncmp(line, "0:", 2) == 0) {
            snprintf(v2, len, "%s", strcmp(path, "/") ? path : "");
            found |= PYMIC_CGROUP_V2;
        } else if (lists_controller(controllers, controller)) {
            snprintf(v1, len, "%s", strcmp(path, "/") ? path : "");
            found |= PYMIC_CGROUP_V1;
        }
    }
    fclose(f);
    return found;
}

size_t pymic_cgroup_memory_limit(const char *root)
{
    char v1[4096], v2[4096], dir[4200];
    int found = pymic_cgroup_paths(root, "memory", v1, v2, sizeof v1);
    size_t best = 0;
    for (int kind = PYMIC_CGROUP_V1; kind <= PYMIC_CGROUP_V2; kind <<= 1) {
        if (!(found & kind))
            continue;
        bool unified = kind == PYMIC_CGROUP_V2;
        int top = snprintf(dir, sizeof dir, "%s/sys/fs/cgroup%s", root, unified ? "" : "/memory");
        snprintf(dir + top, sizeof dir - (size_t)top, "%s", unified ? v2 : v1);
        size_t limit = smallest_up_to(dir, (size_t)top,
                                      unified ? "memory.max" : "memory.limit_in_bytes");
        if (limit && (!best || limit < best))
            best = limit;
    }
    return best;
}
