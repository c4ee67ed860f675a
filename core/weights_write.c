/* safetensors writer (see weights.h): u64 LE header length, JSON header, F32 data, written to a
 * temporary file that replaces the target only when complete. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weights.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "weights_write.c writes host floats as little-endian F32"
#endif

/* Writes all n bytes (retrying short writes and EINTR). */
static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The header JSON (sorted keys, compact) padded with spaces to a multiple of 8; the caller frees. */
static cnn_status build_header(const weights_out_tensor *t, size_t n_tensors, const weights_meta_kv *meta,
                               size_t n_meta, char **out, size_t *out_bytes, char *err, size_t err_bytes)
{
    json_t *root = json_object(), *md = n_meta ? json_object() : NULL;
    cnn_status s = root && (md || !n_meta) ? CNN_OK : CNN_ERR_NOMEM;
    for (size_t i = 0; s == CNN_OK && i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value || json_object_get(md, meta[i].key))
            s = cnn_err(err, err_bytes, CNN_ERR_ARG, "metadata key %zu missing, duplicate or without a value", i);
        else if (json_object_set_new(md, meta[i].key, json_string(meta[i].value)))
            s = cnn_err(err, err_bytes, CNN_ERR_ARG, "metadata '%s': not UTF-8 or out of memory", meta[i].key);
    }
    if (s == CNN_OK && md && json_object_set(root, "__metadata__", md)) s = CNN_ERR_NOMEM;
    uint64_t offset = 0;
    for (size_t i = 0; s == CNN_OK && i < n_tensors; i++) {
        if (!t[i].name || !t[i].name[0] || !strcmp(t[i].name, "__metadata__") || json_object_get(root, t[i].name) ||
            t[i].n_dims < 0 || t[i].n_dims > WEIGHTS_MAX_DIMS) {
            s = cnn_err(err, err_bytes, CNN_ERR_ARG, "tensor %zu ('%s'): empty, reserved or duplicate name, or bad rank",
                        i, t[i].name ? t[i].name : "(null)");
            break;
        }
        json_t *shape = json_array();
        uint64_t n = 1;
        for (int d = 0; shape && d < t[i].n_dims; d++) {
            if (t[i].shape[d] < 0) {
                json_decref(shape);
                shape = NULL;
                s = cnn_err(err, err_bytes, CNN_ERR_ARG, "tensor '%s': negative dimension", t[i].name);
                break;
            }
            n *= (uint64_t)t[i].shape[d];
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        }
        if (s != CNN_OK) break;
        json_t *e = shape ? json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                      (json_int_t)offset, (json_int_t)(offset + 4 * n))
                          : NULL;
        if (!e || json_object_set_new(root, t[i].name, e)) s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        offset += 4 * n;
    }
    char *text = s == CNN_OK ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (s == CNN_OK && !text) s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    json_decref(md);
    json_decref(root);
    if (s != CNN_OK) return s;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *h = realloc(text, padded + 1);
    if (!h) {
        free(text);
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    }
    memset(h + n, ' ', padded - n);
    h[padded] = '\0';
    *out = h;
    *out_bytes = padded;
    return CNN_OK;
}

cnn_status weights_write(const char *path, const weights_out_tensor *tensors, size_t n_tensors,
                         const weights_meta_kv *meta, size_t n_meta, char *err, size_t err_bytes)
{
    char *header = NULL, *tmp = NULL, *dir_copy = NULL, *base_copy = NULL;
    size_t header_bytes = 0;
    int fd = -1, created = 0;
    cnn_status s = build_header(tensors, n_tensors, meta, n_meta, &header, &header_bytes, err, err_bytes);
    if (s != CNN_OK) return s;
    dir_copy = strdup(path);
    base_copy = strdup(path);
    if (!dir_copy || !base_copy) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto done;
    }
    const char *dir = dirname(dir_copy), *base = basename(base_copy);
    size_t tmp_bytes = strlen(dir) + strlen(base) + 16;
    if (!(tmp = malloc(tmp_bytes))) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto done;
    }
    snprintf(tmp, tmp_bytes, "%s/.%s.tmp-XXXXXX", dir, base);
    if ((fd = mkstemp(tmp)) < 0) {
        s = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot create a temporary file in %s: %s", dir, strerror(errno));
        goto done;
    }
    created = 1;
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));
    int bad = fchmod(fd, 0644) || write_all(fd, len, 8) || write_all(fd, header, header_bytes);
    for (size_t i = 0; !bad && i < n_tensors; i++) {
        size_t n = 1;
        for (int d = 0; d < tensors[i].n_dims; d++) n *= (size_t)tensors[i].shape[d];
        bad = n && write_all(fd, tensors[i].data, 4 * n);
    }
    if (bad || fsync(fd)) {
        s = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (close(fd)) {
        fd = -1;
        s = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path)) {
        s = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    created = 0; /* renamed: nothing to remove */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) { /* make the rename durable; the file is complete either way */
        fsync(dfd);
        close(dfd);
    }
done:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(tmp);
    free(header);
    free(dir_copy);
    free(base_copy);
    return s;
}
