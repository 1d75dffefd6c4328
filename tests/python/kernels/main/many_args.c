/*
 * many_args.c -- kernels at the argument limits: 64 arguments (the least
 * API.md promises) and 128 (PYMIC_MAX_KERNEL_ARGS).
 *
 * The first argument is an int64 output array; every other argument is an
 * int64 scalar.  The kernel writes the argument count to out[0] and the
 * value of argument i to out[i], so a test sees both that every argument
 * arrived and that the order was kept.  All parameters share one pointer
 * type so the parameter lists can be spelled by the macros below instead
 * of 128 hand-written names.
 */
#include <pymic_kernel.h>

#define PARAM8(p)                                                            \
    int64_t *p##0, int64_t *p##1, int64_t *p##2, int64_t *p##3,             \
    int64_t *p##4, int64_t *p##5, int64_t *p##6, int64_t *p##7
#define PARAM64(p)                                                           \
    PARAM8(p##0), PARAM8(p##1), PARAM8(p##2), PARAM8(p##3),                 \
    PARAM8(p##4), PARAM8(p##5), PARAM8(p##6), PARAM8(p##7)

#define NAME8(p) p##0, p##1, p##2, p##3, p##4, p##5, p##6, p##7
#define NAME64(p)                                                            \
    NAME8(p##0), NAME8(p##1), NAME8(p##2), NAME8(p##3),                     \
    NAME8(p##4), NAME8(p##5), NAME8(p##6), NAME8(p##7)

static void report_arguments(int64_t *const *args, int64_t count)
{
    int64_t *out = args[0];
    out[0] = count;
    for (int64_t i = 1; i < count; i++)
        out[i] = *args[i];
}

PYMIC_KERNEL
void args_64(PARAM64(a))
{
    int64_t *const args[] = {NAME64(a)};
    report_arguments(args, 64);
}

PYMIC_KERNEL
void args_128(PARAM64(a), PARAM64(b))
{
    int64_t *const args[] = {NAME64(a), NAME64(b)};
    report_arguments(args, 128);
}
