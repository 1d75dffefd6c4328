/*
 * undefined_symbol.c -- a library that needs a function nobody defines.
 * Loading it with RTLD_NOW must fail and name the symbol.
 */
#include <pymic_kernel.h>

void pymic_test_function_that_does_not_exist(void);

PYMIC_KERNEL void calls_missing(void) { pymic_test_function_that_does_not_exist(); }
