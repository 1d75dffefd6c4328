/*
 * undefined_symbol.c -- a library the loader must refuse: it needs a
 * variable that nothing defines.  A data reference (unlike a function call)
 * is resolved when the library is loaded even with lazy binding, so every
 * loader mode fails on it.
 */
#include <pymic_kernel.h>

extern int64_t pymic_tests_variable_nobody_defines;

PYMIC_KERNEL
void uses_missing_variable(int64_t *out)
{
    out[0] = pymic_tests_variable_nobody_defines;
}
