"""Typed kernels: invokes checked against the kernel's C prototype
(load_source parses it; OffloadLibrary.declare takes it for load_library)."""

import re
import shutil

import numpy as np
import pytest

import pymic
from pymic._signatures import SignatureError, parse_prototypes

SOURCE = r"""
#include <pymic_kernel.h>
#include <complex.h>

PYMIC_KERNEL
void scale(double *a, const int64_t *n, const double *factor)
{
    for (int64_t i = 0; i < *n; i++)
        a[i] *= *factor;
}

/* Writes through a const pointer on purpose: shows it is not copied back. */
PYMIC_KERNEL void scribble(const double *a, const int64_t *n)
{
    double *writable = (double *)a;
    for (int64_t i = 0; i < *n; i++)
        writable[i] = -1.0;
}

PYMIC_KERNEL void anything(void *p, const int32_t *i, const float complex *z,
                           const uint64_t *u, const char *c, const _Bool *b) {}

PYMIC_KERNEL void nothing(void) {}

struct opaque;
PYMIC_KERNEL void untyped(struct opaque *p) {}
"""


@pytest.fixture(scope="module")
def source_lib():
    return pymic.devices[0].load_source(SOURCE)


@pytest.fixture
def private_lib(device, kernel_dir, tmp_path):
    """The test kernel library loaded from a private copy: declarations made
    on it do not reach the library the other tests share."""
    path = tmp_path / "libpymictest_private.so"
    shutil.copy(kernel_dir / "libpymictest.so", path)
    return device.load_library(str(path))


# ------------------------------------------------------------- load_source

def test_a_float32_array_for_a_double_pointer_is_refused_before_anything_runs(
        stream, source_lib):
    a = np.ones(4, dtype=np.float32)
    with pytest.raises(TypeError) as error:
        stream.invoke(source_lib.scale, a, 4, 2.0)
    message = str(error.value)
    assert "scale()" in message and "argument 1 'a'" in message
    assert "ndarray of float32" in message and "double *" in message
    stream.sync()
    np.testing.assert_array_equal(a, np.ones(4, dtype=np.float32))


def test_a_matching_invoke_runs(stream, source_lib):
    a = np.ones(4)
    stream.invoke(source_lib.scale, a, 4, 2.5)
    np.testing.assert_array_equal(a, np.full(4, 2.5))
    oa = stream.bind(np.ones(3))
    stream.invoke(source_lib.scale, oa, np.int64(3), np.float64(2.0))
    np.testing.assert_array_equal(oa.get(), np.full(3, 2.0))


def test_an_offload_array_of_another_dtype_is_refused(stream, source_lib):
    oa = stream.bind(np.ones(4, dtype=np.float32))
    with pytest.raises(TypeError, match=r"argument 1 'a' is an OffloadArray of float32"):
        stream.invoke(source_lib.scale, oa, 4, 2.0)
    np.testing.assert_array_equal(oa.get(), np.ones(4, dtype=np.float32))


@pytest.mark.parametrize("n, factor, expected", [
    (4, 2, "argument 3 'factor' is a Python int (passed as int64), the kernel takes "
           "const double * (float64); pass a float"),
    (4.0, 2.0, "argument 2 'n' is a Python float (passed as float64), the kernel takes "
               "const int64_t * (int64); pass an int"),
    (np.int32(4), 2.0, "argument 2 'n' is a numpy.int32 (int32)"),
    (4, np.float32(2.0), "argument 3 'factor' is a numpy.float32 (float32)"),
    (4, 2j, "argument 3 'factor' is a Python complex"),
    (True, 2.0, "argument 2 'n' is a Python bool"),
    (2**63, 2.0, "argument 2 'n' is a Python int (passed as uint64)"),
], ids=["int-for-double", "float-for-int64", "int32", "float32", "complex", "bool", "uint64"])
def test_scalar_kinds_are_checked(stream, source_lib, n, factor, expected):
    a = np.ones(4)
    with pytest.raises(TypeError) as error:
        stream.invoke(source_lib.scale, a, n, factor)
    assert expected in str(error.value)
    np.testing.assert_array_equal(a, np.ones(4))


# anything(void *p, const int32_t *i, const float complex *z, const uint64_t *u,
#          const char *c, const _Bool *b): one argument at a time made wrong.
ANYTHING_OK = (None, np.int32(1), np.complex64(1j), 1, np.int8(1), True)
HINTS = [
    (5, 1, "pass True or False"),
    (5, np.zeros(2, np.int8), "convert it with .astype(numpy.bool_)"),
    (4, np.zeros(2, np.int32), "convert it with .astype(numpy.int8) or .astype(numpy.uint8)"),
    (4, 7, "pass numpy.int8(...) or numpy.uint8(...)"),
    (1, 7, "pass numpy.int32(...)"),
    (2, np.zeros(2), "convert it with .astype(numpy.complex64)"),
]


@pytest.mark.parametrize("position, wrong, hint", HINTS,
                         ids=["int-for-bool", "int8-array-for-bool", "int32-array-for-char",
                              "int-for-char", "int-for-int32", "float64-array-for-complex64"])
def test_the_hint_names_what_to_pass_on_every_numpy(stream, source_lib, position, wrong, hint):
    # A hint names NumPy types that exist in every NumPy pymic supports
    # (numpy.bool is NumPy 2 only; numpy.char is a module of string
    # functions, not a type).
    args = list(ANYTHING_OK)
    args[position] = wrong
    with pytest.raises(TypeError) as error:
        stream.invoke(source_lib.anything, *args)
    message = str(error.value)
    assert message.endswith("; " + hint), message
    for name in re.findall(r"numpy\.(\w+)", message.split("; ", 1)[1]):
        assert isinstance(getattr(np, name), type), name
    stream.invoke(source_lib.anything, *ANYTHING_OK)


@pytest.mark.parametrize("args", [(np.ones(4), 4), (np.ones(4), 4, 2.0, 1)])
def test_the_argument_count_is_checked(stream, source_lib, args):
    with pytest.raises(TypeError, match=r"scale\(\) takes 3 arguments \(double \*a, const "
                                        r"int64_t \*n, const double \*factor\), \d given"):
        stream.invoke(source_lib.scale, *args)


def test_a_kernel_without_parameters_takes_no_arguments(stream, source_lib):
    stream.invoke(source_lib.nothing)
    with pytest.raises(TypeError, match=r"nothing\(\) takes 0 arguments"):
        stream.invoke(source_lib.nothing, 1)


def test_an_ndarray_given_to_a_const_pointer_is_not_copied_back(stream, source_lib):
    a = np.ones(4)
    stream.invoke(source_lib.scribble, a, 4)
    np.testing.assert_array_equal(a, np.ones(4))


def test_void_pointers_device_pointers_and_none_are_not_checked(stream, source_lib):
    dptr = stream.allocate_device_memory(16)
    for p in (np.ones(3, dtype=np.int16), dptr, None, 7, stream.bind(np.zeros(2))):
        stream.invoke(source_lib.anything, p, np.int32(1), np.complex64(1j), 2**64 - 1,
                      np.int8(1), True)
    stream.invoke(source_lib.scale, dptr, 2, 1.0)  # a device pointer: any element type
    stream.invoke(source_lib.scale, None, 0, 1.0)
    stream.sync()


def test_plain_char_takes_int8_and_uint8(stream, source_lib):
    for c in (np.int8(1), np.uint8(1), np.zeros(2, dtype=np.uint8)):
        stream.invoke(source_lib.anything, None, np.int32(1), np.complex64(1j), 1, c, True)
    with pytest.raises(TypeError, match="argument 5 'c'"):
        stream.invoke(source_lib.anything, None, np.int32(1), np.complex64(1j), 1,
                      np.int16(1), True)


def test_a_byte_swapped_array_is_refused(stream, source_lib):
    swapped = np.ones(4, dtype=np.dtype(np.float64).newbyteorder())
    with pytest.raises(TypeError, match="argument 1 'a'"):
        stream.invoke(source_lib.scale, swapped, 4, 2.0)


def test_a_prototype_pymic_cannot_read_leaves_the_kernel_unchecked(stream, source_lib):
    stream.invoke(source_lib.untyped, np.zeros(2, dtype=np.int16))
    stream.invoke(source_lib.untyped, 1.5)


def test_a_refused_invoke_leaves_the_stream_usable(stream, source_lib):
    a = np.ones(4)
    oa = stream.bind(np.ones(4))
    with pytest.raises(TypeError):
        stream.invoke(source_lib.scale, oa, 4, "two")
    with pytest.raises(TypeError):
        stream.invoke(source_lib.scale, a, np.uint64(4), 2.0)
    stream.invoke(source_lib.scale, oa, 4, 3.0)
    np.testing.assert_array_equal(oa.get(), np.full(4, 3.0))
    np.testing.assert_array_equal(a, np.ones(4))


# --------------------------------------------------------------- declare

def test_undeclared_kernels_of_a_library_stay_unchecked(stream, private_lib):
    out = np.zeros(1)
    stream.invoke(private_lib.store_double, out, 3)  # pyMIC: the int's bytes arrive
    assert out.view(np.int64)[0] == 3


def test_declare_checks_later_invokes(stream, private_lib):
    names = private_lib.declare("void scale_double(double *x, const int64_t *n, "
                                "const double *factor);")
    assert names == ["scale_double"]
    with pytest.raises(TypeError, match=r"scale_double\(\): argument 1 'x' is an ndarray "
                                        r"of float32"):
        stream.invoke(private_lib.scale_double, np.ones(2, dtype=np.float32), 2, 2.0)
    x = np.ones(2)
    stream.invoke(private_lib.scale_double, x, 2, 2.0)
    np.testing.assert_array_equal(x, [2.0, 2.0])


def test_declare_reaches_handles_taken_before(stream, private_lib):
    kernel = private_lib.store_double
    stream.invoke(kernel, np.zeros(1), 1)
    private_lib.declare("void store_double(double *out, const double *value)")
    with pytest.raises(TypeError, match="argument 2 'value'"):
        stream.invoke(kernel, np.zeros(1), 1)


def test_declare_several_prototypes_at_once(stream, private_lib):
    names = private_lib.declare("""
        void store_int64(int64_t *out, const int64_t *value);
        void store_double(double *out, const double *value);
    """, "void increment_int64(int64_t *x, const int64_t *n)")
    assert names == ["store_int64", "store_double", "increment_int64"]
    with pytest.raises(TypeError):
        stream.invoke(private_lib.store_int64, np.zeros(1), 1)


def test_declare_a_header_file(stream, private_lib, tmp_path):
    header = tmp_path / "kernels.h"
    header.write_text("""
        #ifndef KERNELS_H
        #define KERNELS_H
        #include <stdint.h>
        int not_a_kernel(const char *name);          /* not exported: ignored */
        struct config { int n; };
        PYMIC_KERNEL void copy_double(double *dst, const double *src,
                                      const int64_t *n);
        #endif
    """)
    assert private_lib.declare(header) == ["copy_double"]
    assert private_lib.declare(str(header)) == ["copy_double"]
    with pytest.raises(TypeError, match="argument 2 'src'"):
        stream.invoke(private_lib.copy_double, np.zeros(2), np.zeros(2, np.float32), 2)


def test_declare_a_header_with_cplusplus_guards(stream, private_lib, tmp_path):
    # A C library's header, as most are written: the extern "C" block that
    # only C++ sees must not hide the prototypes inside it.
    header = tmp_path / "guarded.h"
    header.write_text("""
        #ifndef GUARDED_H
        #define GUARDED_H
        #include <stdint.h>
        #ifdef __cplusplus
        extern "C" {
        #endif
        void copy_double(double *dst, const double *src, const int64_t *n);
        void scale_double(double *x, const int64_t *n, const double *factor);
        #ifdef __cplusplus
        }
        #endif
        #endif
    """)
    assert private_lib.declare(header) == ["copy_double", "scale_double"]
    with pytest.raises(TypeError, match="argument 2 'src'"):
        stream.invoke(private_lib.copy_double, np.zeros(2), np.zeros(2, np.float32), 2)


LIBRARY_WITH_HELPERS = r"""
#include <pymic_kernel.h>
struct opaque { int n; };
int helpers_version(void) { return 3; }
void set_count(int n) { (void)n; }
PYMIC_KERNEL void twice(double *a, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++) a[i] *= 2.0;
}
PYMIC_KERNEL void poke(struct opaque *p) { p->n = 1; }
"""


def test_a_header_may_declare_exported_functions_that_are_not_kernels(stream, device,
                                                                       tmp_path):
    # A library's header also declares its other exported functions (a
    # version query, a setter): they are not kernels, so declare() leaves
    # them alone, as it does a kernel whose element type it cannot read.
    lib = device.load_library(pymic.compile(LIBRARY_WITH_HELPERS))
    header = tmp_path / "helpers.h"
    header.write_text("""
        #include <stdint.h>
        struct opaque;
        int helpers_version(void);
        void set_count(int n);
        void twice(double *a, const int64_t *n);
        void poke(struct opaque *p);
    """)
    assert lib.declare(header) == ["twice"]
    with pytest.raises(TypeError, match="argument 1 'a' is an ndarray of float32"):
        stream.invoke(lib.twice, np.ones(2, np.float32), 2)
    a = np.ones(2)
    stream.invoke(lib.twice, a, 2)
    np.testing.assert_array_equal(a, [2.0, 2.0])


def test_a_header_whose_path_has_parentheses(stream, private_lib, tmp_path):
    # "copy (2)/kernels.h" is a file, not a prototype.
    directory = tmp_path / "copy (2)"
    directory.mkdir()
    header = directory / "kernels.h"
    header.write_text("#include <stdint.h>\n"
                      "void copy_double(double *dst, const double *src, const int64_t *n);\n")
    assert private_lib.declare(str(header)) == ["copy_double"]


def test_a_header_with_an_export_macro(stream, private_lib, tmp_path):
    # Library headers mark their functions with a macro of their own
    # (defined in another header, or only for some compilers): an
    # upper-case word before `void` is read as such a macro.
    header = tmp_path / "exported.h"
    header.write_text("""
        #include <stdint.h>
        #include "config.h"   /* defines MYLIB_API, not read here */
        MYLIB_API void copy_double(double *dst, const double *src, const int64_t *n);
        MYLIB_API MYLIB_DEPRECATED void scale_double(double *x, const int64_t *n,
                                                     const double *factor);
    """)
    assert private_lib.declare(header) == ["copy_double", "scale_double"]
    with pytest.raises(TypeError, match="argument 1 'x'"):
        stream.invoke(private_lib.scale_double, np.ones(2, np.float32), 2, 2.0)


def test_a_header_whose_kernels_cannot_be_read_says_why(private_lib, tmp_path):
    header = tmp_path / "unreadable.h"
    header.write_text("#include <stdint.h>\n"
                      "void copy_double(double *dst, const my_real *src, const int64_t *n);\n")
    with pytest.raises(ValueError, match=r"copy_double\(\): .*my_real"):
        private_lib.declare(header)


def test_a_header_that_declares_no_kernel_of_the_library_is_refused(private_lib, tmp_path):
    # Checking nothing while the user believes the kernels checked would be
    # worse than an error.
    header = tmp_path / "other.h"
    header.write_text("#include <stdint.h>\nvoid not_in_this_library(double *x);\n")
    with pytest.raises(ValueError, match=r"other\.h declares no kernel of"):
        private_lib.declare(header)


@pytest.mark.parametrize("prototype, match", [
    ("int scale_double(double *x, const int64_t *n, const double *f)", "returns void"),
    ("void scale_double(double *x, int64_t n, const double *f)", "not a pointer"),
    ("void scale_double(double *x, const my_int *n, const double *f)", "unknown element"),
    ("void scale_double(double *x, ...)", "variable arguments"),
    ("scale_double", "No such file|no function prototype"),
])
def test_declare_refuses_what_no_kernel_can_be(private_lib, prototype, match):
    with pytest.raises((ValueError, OSError), match=match):
        private_lib.declare(prototype)


def test_declare_of_an_unknown_kernel_declares_nothing(stream, private_lib):
    with pytest.raises(pymic.library.KernelNotFoundError):
        private_lib.declare("void store_double(double *out, const double *value);"
                            "void no_such_kernel(double *x);")
    stream.invoke(private_lib.store_double, np.zeros(1), 1)  # still unchecked


def test_signature_error_is_a_value_error():
    assert issubclass(SignatureError, ValueError)
    with pytest.raises(SignatureError):
        parse_prototypes("void f(double x)")


@pytest.mark.parametrize("prototype, expected", [
    ("void f(double a[], const float complex * restrict b)",
     [("a", "double *", "float64", False), ("b", "const float complex *", "complex64", True)]),
    ("void f(unsigned long *u, long long *l, short *s, unsigned char *c, signed char *d)",
     [("u", "unsigned long *", "uint64", False), ("l", "long long *", "int64", False),
      ("s", "short *", "int16", False), ("c", "unsigned char *", "uint8", False),
      ("d", "signed char *", "int8", False)]),
    ("void f(double * const p, char **names, size_t *n, _Bool *b, long double *x)",
     [("p", "double *", "float64", False), ("names", "char **", "any", False),
      ("n", "size_t *", "uint64", False), ("b", "_Bool *", "bool", False),
      ("x", "long double *", "longdouble", False)]),
    ("void f(double *, const int *)",
     [("arg1", "double *", "float64", False), ("arg2", "const int *", "int32", True)]),
])
def test_parameter_types_are_read_as_c_reads_them(prototype, expected):
    (parsed,) = parse_prototypes(prototype)
    assert [(p.name, p.spelling, p.element, p.const) for p in parsed.parameters] == expected


def test_comments_and_preprocessor_lines_are_ignored():
    parsed = parse_prototypes("""
        // void commented(int x);
        /* void also(int x); */
        #define MACRO(x) void macro(x)
        __attribute__((visibility("default"))) void real(double *a /* data */);
    """)
    assert [p.name for p in parsed] == ["real"]


def test_a_negative_int_does_not_fit_an_unsigned_parameter(stream, source_lib):
    with pytest.raises(TypeError, match=r"argument 4 'u' is a Python int \(passed as int64\)"):
        stream.invoke(source_lib.anything, None, np.int32(1), np.complex64(1j), -1,
                      np.int8(1), True)
