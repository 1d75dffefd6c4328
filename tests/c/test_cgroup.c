/*
 * test_cgroup.c -- the default memory limit's cgroup look-up, on cgroup
 * trees this test writes itself (a fake root directory), so each case is
 * deterministic whatever container the test runs in.
 *
 * Built with src/engine/cgroup.c compiled in: the function is internal to
 * libpymic and not exported.
 */
#include "check.h"
#include "../../src/engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64];

static void write_file(const char *relative, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    /* mkdir -p of the parent */
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void fresh_root(void)
{
    snprintf(root, sizeof root, "/tmp/pymic_cgroupXXXXXX");
    CHECK(mkdtemp(root) != NULL);
}

static void remove_root(void)
{
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    CHECK(system(command) == 0);
}

int main(void)
{
    /* No /proc/self/cgroup at all: no limit. */
    fresh_root();
    CHECK(pymic_cgroup_memory_limit(root) == 0);
    remove_root();

    /* cgroup v2: the smallest memory.max from the process's group up. */
    fresh_root();
    write_file("proc/self/cgroup", "0::/outer/inner\n");
    write_file("sys/fs/cgroup/outer/inner/memory.max", "max\n");
    write_file("sys/fs/cgroup/outer/memory.max", "1073741824\n");
    CHECK(pymic_cgroup_memory_limit(root) == 1073741824u);
    write_file("sys/fs/cgroup/outer/inner/memory.max", "536870912\n");
    CHECK(pymic_cgroup_memory_limit(root) == 536870912u);
    remove_root();

    /* A container's namespace root: "0::/" and memory.max at the top. */
    fresh_root();
    write_file("proc/self/cgroup", "0::/\n");
    write_file("sys/fs/cgroup/memory.max", "2147483648\n");
    CHECK(pymic_cgroup_memory_limit(root) == 2147483648u);
    write_file("sys/fs/cgroup/memory.max", "max\n");
    CHECK(pymic_cgroup_memory_limit(root) == 0);
    remove_root();

    /* cgroup v1: the memory controller's limit_in_bytes; the "unlimited"
     * value (2^63 rounded down to a page) is no limit. */
    fresh_root();
    write_file("proc/self/cgroup", "4:cpu,cpuacct:/job\n3:memory:/job\n");
    write_file("sys/fs/cgroup/memory/job/memory.limit_in_bytes", "805306368\n");
    CHECK(pymic_cgroup_memory_limit(root) == 805306368u);
    write_file("sys/fs/cgroup/memory/job/memory.limit_in_bytes", "9223372036854771712\n");
    CHECK(pymic_cgroup_memory_limit(root) == 0);
    remove_root();

    /* Garbage in the files is no limit, not a crash. */
    fresh_root();
    write_file("proc/self/cgroup", "no colons here\n0::/g\n");
    write_file("sys/fs/cgroup/g/memory.max", "lots\n");
    CHECK(pymic_cgroup_memory_limit(root) == 0);
    remove_root();
    return check_finish();
}
