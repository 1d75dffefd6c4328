/*
 * second.c -- a second, independent kernel library: loading several
 * libraries at once and looking a kernel up in the wrong one.
 */
#include <pymic_kernel.h>

PYMIC_KERNEL
void second_answer(int64_t *out)
{
    out[0] = 42;
}
