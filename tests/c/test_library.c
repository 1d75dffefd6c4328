/*
 * test_library.c -- loading libraries and finding kernels, with the
 * loader's reasons for failures.
 *
 * argv[1]: test kernels, argv[2]: 128-argument kernels, argv[3]: a library
 * with an undefined symbol, argv[4]: kernels that need argv[5] (a helper
 * library) through their run path $ORIGIN.
 */
#include "check.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_load_and_find(const char *path)
{
    pymic_library *lib = NULL;
    CHECK_OK(pymic_library_load(0, path, &lib));
    CHECK(strcmp(pymic_library_path(lib), path) == 0);
    CHECK(pymic_library_device(lib) == 0);

    pymic_kernel *k = NULL, *again = NULL;
    CHECK_OK(pymic_kernel_find(lib, "increment", &k));
    CHECK_OK(pymic_kernel_find(lib, "increment", &again));
    CHECK(k == again); /* cached */
    CHECK(strcmp(pymic_kernel_name(k), "increment") == 0);
    CHECK(pymic_kernel_address(k) != NULL);
    CHECK(pymic_kernel_device(k) == 0);
    CHECK(pymic_kernel_library(k) == lib);

    CHECK_STATUS(pymic_kernel_find(lib, "no_such_kernel", &k), PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK_MESSAGE("no_such_kernel");
    CHECK_MESSAGE(path);
    CHECK_STATUS(pymic_kernel_find(lib, NULL, &k), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_kernel_find(NULL, "increment", &k), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_kernel_find(lib, "increment", NULL), PYMIC_ERR_INVALID_ARGUMENT);

    CHECK(pymic_library_path(NULL) == NULL);
    CHECK(pymic_library_device(NULL) < 0);
    CHECK(pymic_kernel_name(NULL) == NULL);
    CHECK(pymic_kernel_address(NULL) == NULL);
    CHECK(pymic_kernel_device(NULL) < 0);
    CHECK(pymic_kernel_library(NULL) == NULL);

    /* Unloading returns at once; the queued invokes of the library's
     * kernels all still run (it is closed after them). */
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_kernel *gate_k = NULL;
    CHECK_OK(pymic_kernel_find(lib, "wait_for_gate", &gate_k));
    _Atomic int64_t gate = 0;
    int64_t counter = 0;
    pymic_arg gate_arg = {(void *)&gate, 0}, inc = {&counter, 0};
    CHECK_OK(pymic_invoke(s, gate_k, 1, &gate_arg));
    for (int i = 0; i < 10; i++)
        CHECK_OK(pymic_invoke(s, k, 1, &inc));
    CHECK_OK(pymic_library_unload(lib));
    CHECK(counter == 0);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(s));
    CHECK(counter == 10);
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_STATUS(pymic_library_unload(NULL), PYMIC_ERR_INVALID_ARGUMENT);
}

static void test_load_errors(const char *undefined_path)
{
    pymic_library *lib = NULL;
    CHECK_STATUS(pymic_library_load(0, "/nonexistent/dir/libnothing.so", &lib),
                 PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE("/nonexistent/dir/libnothing.so");
    CHECK_MESSAGE("No such file");
    CHECK(lib == NULL);

    /* A text file with a .so name: the loader's "not ELF" reason. */
    char text_path[] = "/tmp/pymic_test_textXXXXXX.so";
    int fd = mkstemps(text_path, 3);
    CHECK(fd >= 0);
    const char text[] = "this is not a shared object\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    CHECK_STATUS(pymic_library_load(0, text_path, &lib), PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE(text_path);
    CHECK(strstr(pymic_last_error(), "ELF") || strstr(pymic_last_error(), "too short"));
    unlink(text_path);

    CHECK_STATUS(pymic_library_load(0, undefined_path, &lib), PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE("undefined symbol");
    CHECK_MESSAGE("pymic_test_function_that_does_not_exist");

    CHECK_STATUS(pymic_library_load(0, NULL, &lib), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_library_load(0, "", &lib), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_library_load(0, undefined_path, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_library_load(4, undefined_path, &lib), PYMIC_ERR_INVALID_ARGUMENT);
}

/* Copy `from` to a new file `to` (a new inode, as a linker writes). */
static void copy_file(const char *from, const char *to)
{
    unlink(to);
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CHECK(in && out);
    char buffer[8192];
    size_t n;
    while (in && out && (n = fread(buffer, 1, sizeof buffer, in)) > 0)
        CHECK(fwrite(buffer, 1, n, out) == n);
    if (in)
        fclose(in);
    if (out)
        fclose(out);
}

/* A library is the file, not its name: another library put at the same
 * path is loaded as itself (glibc, given the name again, would return the
 * first one), while the same file through another path is one object. */
static void test_rebuilt_library_at_the_same_path(const char *first, const char *second)
{
    char dir[] = "/tmp/pymic_test_rebuildXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], link[128];
    snprintf(path, sizeof path, "%s/libv.so", dir);
    snprintf(link, sizeof link, "%s/link.so", dir);

    copy_file(first, path);
    pymic_library *old = NULL, *rebuilt = NULL, *linked = NULL;
    pymic_kernel *k = NULL, *again = NULL;
    CHECK_OK(pymic_library_load(0, path, &old));
    CHECK_OK(pymic_kernel_find(old, "increment", &k));

    copy_file(second, path);
    CHECK_OK(pymic_library_load(0, path, &rebuilt));
    CHECK_OK(pymic_kernel_find(rebuilt, "sum128", &k));
    CHECK_STATUS(pymic_kernel_find(rebuilt, "increment", &k), PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK_OK(pymic_kernel_find(old, "increment", &k)); /* the old one is unchanged */

    CHECK(symlink(path, link) == 0);
    CHECK_OK(pymic_library_load(0, link, &linked));
    CHECK_OK(pymic_kernel_find(rebuilt, "sum128", &k));
    CHECK_OK(pymic_kernel_find(linked, "sum128", &again));
    CHECK(pymic_kernel_address(k) == pymic_kernel_address(again));

    CHECK_OK(pymic_library_unload(old));
    CHECK_OK(pymic_library_unload(rebuilt));
    CHECK_OK(pymic_library_unload(linked));
    CHECK_OK(pymic_device_sync(0));
    unlink(link);
    unlink(path);
    rmdir(dir);
}

/* pymic_library_load_fd loads the file open as the descriptor, whatever
 * is at its path by then; the caller's descriptor stays its own. */
static void test_load_fd(const char *first, const char *second)
{
    char dir[] = "/tmp/pymic_test_fdXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/libchecked.so", dir);
    copy_file(first, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    CHECK(fd >= 0);
    copy_file(second, path); /* swapped after the caller opened it */
    pymic_library *lib = NULL;
    pymic_kernel *k = NULL;
    CHECK_OK(pymic_library_load_fd(0, fd, path, &lib));
    CHECK(strcmp(pymic_library_path(lib), path) == 0);
    CHECK_OK(pymic_kernel_find(lib, "increment", &k));
    CHECK_STATUS(pymic_kernel_find(lib, "sum128", &k), PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK(fcntl(fd, F_GETFD) >= 0); /* still the caller's */
    close(fd);
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_device_sync(0));

    CHECK_STATUS(pymic_library_load_fd(0, -1, path, &lib), PYMIC_ERR_INVALID_ARGUMENT);
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(dir_fd >= 0);
    CHECK_STATUS(pymic_library_load_fd(0, dir_fd, dir, &lib), PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE("directory");
    close(dir_fd);
    CHECK_STATUS(pymic_library_load(0, dir, &lib), PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE("directory");
    unlink(path);
    rmdir(dir);
}

/* `$ORIGIN` in a library's run path names its directory when the library
 * is loaded by name (pymic_library_load, _opened), relative names
 * included; a checked descriptor (pymic_library_load_fd) is never loaded
 * by a name, so there `$ORIGIN` finds nothing. */
static void test_origin(const char *kernels, const char *helper)
{
    char dir[] = "/tmp/pymic_test_originXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], helper_copy[128];
    const char *helper_name = "libpymic_test_origin_dep.so"; /* its soname (meson.build) */
    snprintf(path, sizeof path, "%s/libk.so", dir);
    snprintf(helper_copy, sizeof helper_copy, "%s/%s", dir, helper_name);
    copy_file(kernels, path);
    copy_file(helper, helper_copy);

    /* First, while no helper is loaded (the loader would reuse it by name). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    CHECK(fd >= 0);
    pymic_library *checked = NULL, *by_name = NULL, *opened = NULL;
    CHECK_STATUS(pymic_library_load_fd(0, fd, path, &checked), PYMIC_ERR_LIBRARY);
    CHECK_MESSAGE(helper_name);

    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dir) == 0);
    CHECK_OK(pymic_library_load(0, "libk.so", &by_name)); /* no slash: still this file */
    CHECK(chdir(cwd) == 0);
    pymic_kernel *k = NULL, *again = NULL;
    CHECK_OK(pymic_kernel_find(by_name, "origin_value", &k));

    CHECK_OK(pymic_library_load_opened(0, fd, path, &opened));
    CHECK_OK(pymic_kernel_find(opened, "origin_value", &again));
    CHECK(pymic_kernel_address(k) == pymic_kernel_address(again)); /* one object */
    CHECK(fcntl(fd, F_GETFD) >= 0); /* still the caller's */
    close(fd);

    CHECK_OK(pymic_library_unload(by_name));
    CHECK_OK(pymic_library_unload(opened));
    CHECK_OK(pymic_device_sync(0));
    unlink(path);
    unlink(helper_copy);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s test_kernels.so many_args.so undefined.so origin.so "
                        "origin_helper.so\n", argv[0]);
        return 2;
    }
    test_load_and_find(argv[1]);
    test_load_errors(argv[3]);
    test_rebuilt_library_at_the_same_path(argv[1], argv[2]);
    test_load_fd(argv[1], argv[2]);
    test_origin(argv[4], argv[5]);
    return check_finish();
}
