/*
 * device_launch.c -- in pymic-device (linked into it, not into the
 * plugin): when an MPI launcher started it, hand over to the MPI device
 * in libpymic_mpi.so.
 *
 * pymic-device has two lives.  Started by libpymic's proc monitor it gets
 * arguments (proc/device_main.c).  Started by an MPI launcher -- an MPMD
 * line, or MPI_Comm_spawn by a host -- it gets none, and its environment
 * says MPI started it; it then loads libpymic_mpi.so from beside itself
 * (that is where both are installed) and runs its device side.  Only this
 * second life needs MPI, so pymic-device itself never links it.  Like the
 * engine's registry, it looks in the directories of PYMIC_BACKEND_PATH
 * next (a build tree keeps the plugin elsewhere).
 */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device_launch.h"

bool pymic_device_started_by_mpi(int argc)
{
    if (argc != 1)
        return false;
    static const char *const hints[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof hints / sizeof *hints; i++)
        if (getenv(hints[i]))
            return true;
    return false;
}

/* Open libpymic_mpi.so in `directory`; NULL (dlerror() says why) if not. */
static void *open_plugin(const char *directory, size_t len)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%.*s/libpymic_mpi.so", (int)len, directory);
    /* Global: Open MPI's own components expect libmpi's symbols to be. */
    return dlopen(path, RTLD_NOW | RTLD_GLOBAL);
}

int pymic_device_run_mpi(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "pymic-device: cannot find its own file to load libpymic_mpi.so\n");
        return PYMIC_DEVICE_EXIT_MPI;
    }
    self[n] = '\0';
    const char *here = dirname(self);
    void *plugin = open_plugin(here, strlen(here));
    char reason[512];
    snprintf(reason, sizeof reason, "%s", plugin ? "" : dlerror());
    const char *list = getenv("PYMIC_BACKEND_PATH");
    while (!plugin && list && *list) {
        size_t len = strcspn(list, ":");
        if (len)
            plugin = open_plugin(list, len);
        list += len + (list[len] == ':');
    }
    int (*device_main)(int, char **) = NULL;
    if (plugin)
        *(void **)&device_main = dlsym(plugin, "pymic_mpi_device_main");
    if (!device_main) {
        fprintf(stderr, "pymic-device: started by an MPI launcher, but cannot run the MPI "
                "device: %s (was pymic built without MPI?)\n",
                plugin ? dlerror() : reason);
        return PYMIC_DEVICE_EXIT_MPI;
    }
    return device_main(argc, argv);
}
