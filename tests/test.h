/* Minimal test harness shared by every C test program.
 * Each program reports one line per test case: "ok - NAME", "not ok - NAME: why" or "skip - NAME: why";
 * tests/run.sh aggregates those lines over all programs into the final "N passed, M failed" line.
 * A program exits non-zero iff one of its cases failed. */
#ifndef CNN_TEST_H
#define CNN_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int n_pass, n_fail, n_skip;
    int case_failed; /* set by T_CHECK within the current case */
} test_state;

static test_state test_g; /* per test program, not library code */

static inline void test_begin(void) { test_g.case_failed = 0; }

/* Record a failed check inside the current case; prints the detail. */
static inline void test_failf(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stdout, "#   %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    test_g.case_failed = 1;
}

#define T_CHECK(cond, ...) \
    do { if (!(cond)) test_failf(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* End the current case. */
static inline void test_end(const char *name)
{
    if (test_g.case_failed) { printf("not ok - %s\n", name); test_g.n_fail++; }
    else { printf("ok - %s\n", name); test_g.n_pass++; }
    fflush(stdout);
}

static inline void test_skip(const char *name, const char *why)
{
    printf("skip - %s: %s\n", name, why);
    test_g.n_skip++;
    fflush(stdout);
}

static inline int test_finish(void)
{
    printf("# %d passed, %d failed, %d skipped\n", test_g.n_pass, test_g.n_fail, test_g.n_skip);
    return test_g.n_fail ? 1 : 0;
}

/* Exactly n floats from a raw little-endian file (a reference array of tests/ref); NULL when the file
 * is missing or has another size. The caller frees. */
static inline float *test_read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *buf = malloc(n * sizeof(float));
    size_t got = buf ? fread(buf, sizeof(float), n, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        free(buf);
        return NULL;
    }
    return buf;
}

#endif
