/*
 * check.h -- the engine tests' assertion macros.
 *
 * CHECK(expr) counts a pass or prints file:line and the expression and
 * counts a failure; the test goes on, so one run shows every failure.
 * CHECK_STATUS(call, expected) also prints the status name and the
 * engine's last error message.  check_finish() prints the summary line
 * "N passed, M failed" and gives the exit status.
 */
#ifndef PYMIC_TEST_CHECK_H
#define PYMIC_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "pymic.h"

static int check_passed, check_failed;

#define CHECK(expr)                                                        \
    do {                                                                   \
        if (expr) {                                                        \
            check_passed++;                                                \
        } else {                                                           \
            check_failed++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
                    __LINE__, #expr);                                      \
        }                                                                  \
    } while (0)

#define CHECK_STATUS(call, expected)                                       \
    do {                                                                   \
        int check_got_ = (call);                                           \
        int check_want_ = (expected);                                      \
        if (check_got_ == check_want_) {                                   \
            check_passed++;                                                \
        } else {                                                           \
            check_failed++;                                                \
            fprintf(stderr, "%s:%d: %s returned %s (%d), expected %s; "    \
                    "last error: %s\n", __FILE__, __LINE__, #call,         \
                    pymic_status_name(check_got_), check_got_,             \
                    pymic_status_name(check_want_), pymic_last_error());   \
        }                                                                  \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, PYMIC_OK)

/* The last error message mentions `text`. */
#define CHECK_MESSAGE(text) CHECK(strstr(pymic_last_error(), (text)) != NULL)

static inline int check_finish(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif /* PYMIC_TEST_CHECK_H */
