/* Whole-file reads (see fileio.h). */
#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cnn_status file_read_all(const char *path, uint8_t **data, size_t *n_bytes, char *err, size_t err_bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_err(err, err_bytes, CNN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    cnn_status st = CNN_OK;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *grown = cap < (SIZE_MAX >> 1) ? realloc(buf, cap * 2) : NULL;
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    if (!buf) st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "%s: out of memory", path);
    else if (ferror(f)) st = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    if (st != CNN_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    *n_bytes = n;
    return CNN_OK;
}
