/* libFuzzer target: arbitrary bytes as a safetensors file through weights_open (header length, JSON,
 * dtypes, shapes, offsets, overlap checks, F16/BF16 conversion), then every tensor fetched back with
 * its own shape and the metadata read. The bytes go to a memfd opened by its /proc path, as a file
 * would be. Any crash, sanitizer report or leak is a bug; errors are fine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../core/weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz_safetensors", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    weights *w = NULL;
    char err[512];
    if (weights_open(&w, path, err, sizeof err) != CNN_OK) {
        if (w) abort();
        return 0;
    }
    for (size_t i = 0; i < weights_count(w); i++) {
        const weights_tensor *t = weights_at(w, i);
        const float *values = NULL;
        if (weights_get_f32(w, t->name, t->n_dims, t->shape, &values, err, sizeof err) != CNN_OK) abort();
        float sum = 0.0f;
        for (int64_t k = 0; k < t->n_elems; k++) sum += values[k]; /* every value readable */
        (void)sum;
        if (weights_find(w, t->name) != t) abort();
    }
    (void)weights_meta(w, "architecture");
    char unused[64];
    if (weights_unused(w, unused, sizeof unused) != 0) abort();
    weights_free(w);
    return 0;
}
