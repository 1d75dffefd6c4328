/*
 * config.c -- parsing of PYMIC_DEVICES and size strings.
 *
 * Grammar of PYMIC_DEVICES (items separated by ';', blanks around tokens
 * ignored):
 *     item  := "host" | "host*" N | "host:" list
 *     list  := range ("," range)*
 *     range := cpu | cpu "-" cpu
 * Every CPU must be one the process may run on (its affinity mask), so a
 * device never names a core the worker could not be pinned to.
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
            if (!cpu_available(c, avail, navail)) {
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
    return set_why(why, why_len, "%s", "malformed CPU list (expected e.g. \"host:0-3,6\")");
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

/* Parse one ';'-separated item [p, end) and append its devices. */
static int parse_item(const char *p, const char *end, const int *avail, int navail,
                      pymic_device_spec **specs, int *count, int *cap,
                      char *why, size_t why_len)
{
    p = skip_blanks(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end - p < 4 || strncmp(p, "host", 4) != 0)
        return set_why(why, why_len, "%s", "unknown device kind (only \"host\" exists)");
    p += 4;
    long ndev = 1;
    bool explicit_list = false;
    if (p < end && *p == '*') {
        p = clamp(parse_uint(p + 1, &ndev), end);
        if (!p || p != end || ndev < 1)
            return set_why(why, why_len, "%s", "\"host*N\" needs a positive integer N");
    } else if (p < end && *p == ':') {
        explicit_list = true;
        p++;
    } else if (p != end) {
        return set_why(why, why_len, "%s", "expected \"host\", \"host*N\" or \"host:CPUS\"");
    }
    if (*count + ndev > PYMIC_MAX_DEVICES)
        return set_why(why, why_len, "%s", "too many devices (at most 1024)");
    if (grow_specs(specs, cap, *count + (int)ndev) != PYMIC_OK)
        return set_why(why, why_len, "%s", "out of memory");
    int status = explicit_list
        ? parse_cpu_list(p, end, avail, navail, &(*specs)[*count], why, why_len)
        : split_cpus(ndev, avail, navail, &(*specs)[*count]);
    if (status != PYMIC_OK) {
        if (!explicit_list)
            set_why(why, why_len, "%s", "out of memory");
        return status;
    }
    *count += (int)ndev;
    return PYMIC_OK;
}

int pymic_parse_devices(const char *text, const int *avail, int navail,
                        pymic_device_spec **specs_out, int *count_out, char *why, size_t why_len)
{
    if (navail < 1)
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
        int status = parse_item(p, end, avail, navail, &specs, &count, &cap, why, why_len);
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

void pymic_free_device_specs(pymic_device_spec *specs, int count)
{
    if (!specs)
        return;
    for (int i = 0; i < count; i++)
        free(specs[i].cpus);
    free(specs);
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
