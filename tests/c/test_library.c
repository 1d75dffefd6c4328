/*
 * test_library.c -- loading libraries and finding kernels, with the
 * loader's reasons for failures.
 *
 * argv[1]: test kernels, argv[2]: 128-argument kernels, argv[3]: a library
 * with an undefined symbol.
 */
#include "check.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s test_kernels.so many_args.so undefined.so\n", argv[0]);
        return 2;
    }
    test_load_and_find(argv[1]);
    test_load_errors(argv[3]);
    return check_finish();
}
