/* Unit tests for the safetensors loader: small files are written into a mkdtemp directory, loaded,
 * and checked for values, lookups and every rejection path. Real weights from $CNN_SHARED (default
 * ../shared) are checked when present. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../core/weights.h"
#include "../test.h"

#define ERR_BYTES 512

/* Writes bytes to dir/file; path receives the full name. Returns 0 on success. */
static int file_write(char *path, size_t path_bytes, const char *dir, const char *file, const void *bytes,
                      size_t n_bytes)
{
    snprintf(path, path_bytes, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = n_bytes ? fwrite(bytes, 1, n_bytes, f) : 0;
    int rc = fclose(f);
    return n == n_bytes && rc == 0 ? 0 : -1;
}

/* Writes a safetensors file: u64 LE header_len, then header, then data. header_len is
 * strlen(header) unless override_len is non-zero. */
static int st_write_raw(char *path, size_t path_bytes, const char *dir, const char *file, const char *header,
                        uint64_t override_len, const void *data, size_t data_bytes)
{
    size_t h_bytes = strlen(header);
    uint64_t len = override_len ? override_len : h_bytes;
    size_t total = 8 + h_bytes + data_bytes;
    unsigned char *buf = malloc(total);
    if (!buf)
        return -1;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, h_bytes);
    if (data_bytes)
        memcpy(buf + 8 + h_bytes, data, data_bytes);
    int rc = file_write(path, path_bytes, dir, file, buf, total);
    free(buf);
    return rc;
}

/* Like st_write_raw, but pads the header with spaces (valid JSON whitespace) so the data section
 * starts at a multiple of 8, as real safetensors writers do. */
static int st_write(char *path, size_t path_bytes, const char *dir, const char *file, const char *header,
                    const void *data, size_t data_bytes)
{
    size_t h_bytes = strlen(header);
    size_t padded = (h_bytes + 7) / 8 * 8;
    char *h = malloc(padded + 1);
    if (!h)
        return -1;
    memcpy(h, header, h_bytes);
    memset(h + h_bytes, ' ', padded - h_bytes);
    h[padded] = '\0';
    int rc = st_write_raw(path, path_bytes, dir, file, h, 0, data, data_bytes);
    free(h);
    return rc;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Compares converted values bit for bit (so -0.0 and NaN payloads count); NaN expectations only
 * require a NaN. */
static void check_values(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]))
            T_CHECK(isnan(got[i]), "%s[%zu]: want NaN, got %a", what, i, (double)got[i]);
        else
            T_CHECK(f32_bits(got[i]) == f32_bits(want[i]), "%s[%zu]: want %a (0x%08x), got %a (0x%08x)", what,
                    i, (double)want[i], f32_bits(want[i]), (double)got[i], f32_bits(got[i]));
    }
}

static void put_u16le(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_f32le(unsigned char *p, float f)
{
    uint32_t u = f32_bits(f);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static off_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static void test_f32_in_place(const char *dir)
{
    test_begin();
    const float vals[6] = {1.5f, -0.0f, 0x1p-140f, INFINITY, -3.25e7f, NAN};
    unsigned char data[24];
    for (int i = 0; i < 6; i++)
        put_f32le(data + 4 * i, vals[i]);
    char path[PATH_MAX], err[ERR_BYTES] = "";
    weights *w = NULL;
    T_CHECK(st_write(path, sizeof path, dir, "f32.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", data, sizeof data) == 0,
            "write failed");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (w) {
        T_CHECK(weights_count(w) == 1, "count %zu", weights_count(w));
        const weights_tensor *t = weights_at(w, 0);
        T_CHECK(t && strcmp(t->name, "a") == 0, "name");
        T_CHECK(t && t->dtype == WDTYPE_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
                    t->n_elems == 6 && t->file_bytes == 24 && !t->used,
                "tensor fields");
        if (t)
            check_values("f32", t->data, vals, 6);
        /* aligned F32 is used in place: nothing beyond the mapping is resident */
        T_CHECK(weights_resident_bytes(w) == (size_t)file_size(path), "resident %zu, file %lld",
                weights_resident_bytes(w), (long long)file_size(path));
        T_CHECK(strcmp(weights_path(w), path) == 0, "path");
        T_CHECK(weights_at(w, 1) == NULL, "weights_at past the end");
        T_CHECK(weights_find(w, "a") == t && weights_find(w, "b") == NULL, "find");
    }
    weights_free(w);
    unlink(path);
    test_end("f32_in_place_roundtrip");
}

static void test_f16_bf16(const char *dir)
{
    test_begin();
    static const uint16_t f16_in[] = {0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff,
                                      0x8001, 0x0200, 0x7c00, 0xfc00, 0x7e00, 0x3555, 0x7d01};
    const float f16_want[] = {0.0f,      -0.0f,     1.0f,      -2.0f,     65504.0f,  0x1p-14f,  0x1p-24f,
                              0x1.ff8p-15f, -0x1p-24f, 0x1p-15f, INFINITY, -INFINITY, NAN, 0x1.554p-2f, NAN};
    static const uint16_t bf16_in[] = {0x3f80, 0xc040, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x4049};
    const float bf16_want[] = {1.0f, -3.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-133f, 3.140625f};
    enum { N16 = sizeof f16_in / 2, NB16 = sizeof bf16_in / 2 };
    unsigned char data[2 * (N16 + NB16)];
    for (int i = 0; i < N16; i++)
        put_u16le(data + 2 * i, f16_in[i]);
    for (int i = 0; i < NB16; i++)
        put_u16le(data + 2 * (N16 + i), bf16_in[i]);
    char header[256];
    snprintf(header, sizeof header,
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,%d],\"data_offsets\":[%d,%d]}}",
             N16, 2 * N16, NB16 / 2, 2 * N16, 2 * (N16 + NB16));
    char path[PATH_MAX], err[ERR_BYTES] = "";
    weights *w = NULL;
    T_CHECK(st_write(path, sizeof path, dir, "half.safetensors", header, data, sizeof data) == 0, "write");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (w) {
        const weights_tensor *h = weights_find(w, "h"), *b = weights_find(w, "b");
        T_CHECK(h && h->dtype == WDTYPE_F16 && h->n_elems == N16 && h->file_bytes == 2 * N16, "f16 fields");
        T_CHECK(b && b->dtype == WDTYPE_BF16 && b->n_dims == 2 && b->n_elems == NB16, "bf16 fields");
        if (h) {
            check_values("f16", h->data, f16_want, N16);
            /* NaN payloads survive and come out quiet (signalling 0x7d01 included), like F16C/PyTorch */
            T_CHECK(f32_bits(h->data[12]) == 0x7fc00000u, "qNaN bits 0x%08x", f32_bits(h->data[12]));
            T_CHECK(f32_bits(h->data[14]) == 0x7fe02000u, "sNaN bits 0x%08x", f32_bits(h->data[14]));
        }
        if (b)
            check_values("bf16", b->data, bf16_want, NB16);
        T_CHECK(weights_resident_bytes(w) == (size_t)file_size(path) + 4 * (N16 + NB16),
                "resident %zu should be file + converted copies", weights_resident_bytes(w));
        T_CHECK(weights_at(w, 0) == h && weights_at(w, 1) == b, "weights_at keeps header order");
    }
    weights_free(w);
    unlink(path);
    test_end("f16_bf16_roundtrip");
}

static void test_unaligned_f32(const char *dir)
{
    test_begin();
    const float vals[3] = {0.1f, -7.0f, 0x1p-149f};
    char path[PATH_MAX], err[ERR_BYTES] = "";
    weights *w = NULL;

    /* tensor starts at data offset 1 of an aligned data section */
    unsigned char data[13] = {0xee};
    for (int i = 0; i < 3; i++)
        put_f32le(data + 1 + 4 * i, vals[i]);
    T_CHECK(st_write(path, sizeof path, dir, "unaligned1.safetensors",
                     "{\"u\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13]}}", data, sizeof data) == 0,
            "write");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open offset 1: %s: %s", cnn_status_str(st), err);
    if (w) {
        const weights_tensor *t = weights_find(w, "u");
        T_CHECK(t && ((uintptr_t)t->data % _Alignof(float)) == 0, "converted copy must be aligned");
        if (t)
            check_values("offset1", t->data, vals, 3);
        T_CHECK(weights_resident_bytes(w) == (size_t)file_size(path) + 12, "resident %zu",
                weights_resident_bytes(w));
    }
    weights_free(w);
    w = NULL;
    unlink(path);

    /* odd header length: the data section itself starts unaligned */
    char hdr[96];
    snprintf(hdr, sizeof hdr, "%s", "{\"u\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}");
    while ((8 + strlen(hdr)) % 4 != 1)
        strcat(hdr, " ");
    T_CHECK(st_write_raw(path, sizeof path, dir, "unaligned2.safetensors", hdr, 0, data + 1, 12) == 0, "write");
    st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open odd header: %s: %s", cnn_status_str(st), err);
    if (w && weights_find(w, "u"))
        check_values("odd_header", weights_find(w, "u")->data, vals, 3);
    weights_free(w);
    unlink(path);
    test_end("f32_unaligned_converted");
}

static void test_metadata(const char *dir)
{
    test_begin();
    char path[PATH_MAX], err[ERR_BYTES] = "";
    unsigned char data[4] = {0};
    weights *w = NULL;
    T_CHECK(st_write(path, sizeof path, dir, "meta.safetensors",
                     "{\"__metadata__\":{\"padding\":\"tf_same\",\"empty\":\"\",\"num_classes\":\"1001\"},"
                     "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                     data, sizeof data) == 0,
            "write");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (w) {
        const char *p = weights_meta(w, "padding"), *e = weights_meta(w, "empty");
        T_CHECK(p && strcmp(p, "tf_same") == 0, "padding = %s", p ? p : "(null)");
        T_CHECK(e && strcmp(e, "") == 0, "empty value");
        T_CHECK(weights_meta(w, "num_classes") && strcmp(weights_meta(w, "num_classes"), "1001") == 0,
                "num_classes");
        T_CHECK(weights_meta(w, "missing") == NULL, "missing key should be NULL");
        T_CHECK(weights_count(w) == 1 && weights_find(w, "__metadata__") == NULL,
                "__metadata__ is not a tensor");
    }
    weights_free(w);
    w = NULL;
    unlink(path);

    T_CHECK(st_write(path, sizeof path, dir, "nometa.safetensors",
                     "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", data, sizeof data) == 0,
            "write");
    st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open without metadata: %s", err);
    T_CHECK(weights_meta(w, "padding") == NULL, "no metadata -> NULL");
    weights_free(w);
    unlink(path);
    test_end("metadata");
}

static void test_scalar_and_empty(const char *dir)
{
    test_begin();
    char path[PATH_MAX], err[ERR_BYTES] = "";
    unsigned char data[8];
    put_f32le(data, 42.0f);
    put_f32le(data + 4, 2.0f);
    weights *w = NULL;
    /* "e" has no elements and sits inside "v"'s range: empty ranges overlap nothing */
    T_CHECK(st_write(path, sizeof path, dir, "scalar.safetensors",
                     "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                     "\"e\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[6,6]},"
                     "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     data, sizeof data) == 0,
            "write");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (w) {
        const float *p = NULL;
        st = weights_get_f32(w, "s", 0, NULL, &p, err, sizeof err);
        T_CHECK(st == CNN_OK && p && *p == 42.0f, "scalar: %s", err);
        const int64_t e_shape[2] = {0, 5};
        st = weights_get_f32(w, "e", 2, e_shape, &p, err, sizeof err);
        T_CHECK(st == CNN_OK && p != NULL, "empty tensor: %s", err);
        T_CHECK(weights_find(w, "e")->n_elems == 0, "empty n_elems");
    }
    weights_free(w);
    unlink(path);
    test_end("scalar_and_empty_tensors");
}

static void test_get_f32(const char *dir)
{
    test_begin();
    char path[PATH_MAX], err[ERR_BYTES] = "";
    unsigned char data[24 + 8];
    for (int i = 0; i < 8; i++)
        put_f32le(data + 4 * i, (float)i);
    weights *w = NULL;
    T_CHECK(st_write(path, sizeof path, dir, "get.safetensors",
                     "{\"features.0.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3,1,1],\"data_offsets\":[0,24]},"
                     "\"features.0.0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}}",
                     data, sizeof data) == 0,
            "write");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (w) {
        const float *p = NULL;
        const int64_t ok_shape[4] = {2, 3, 1, 1}, bad_shape[4] = {2, 3, 3, 3}, flat[1] = {6};
        st = weights_get_f32(w, "features.0.0.weight", 4, ok_shape, &p, err, sizeof err);
        T_CHECK(st == CNN_OK && p == weights_find(w, "features.0.0.weight")->data, "ok fetch: %s", err);
        T_CHECK(p && p[5] == 5.0f, "values");
        T_CHECK(weights_find(w, "features.0.0.weight")->used, "fetch marks used");

        err[0] = '\0';
        st = weights_get_f32(w, "features.0.0.bias", 4, bad_shape, &p, err, sizeof err);
        T_CHECK(st == CNN_ERR_SHAPE && p == NULL, "wrong shape: %s", cnn_status_str(st));
        T_CHECK(strstr(err, "tensor 'features.0.0.bias'") && strstr(err, "expected shape [2,3,3,3], got [2]"),
                "shape message: %s", err);
        T_CHECK(!weights_find(w, "features.0.0.bias")->used, "failed fetch must not mark used");

        st = weights_get_f32(w, "features.0.0.weight", 4, bad_shape, &p, err, sizeof err);
        T_CHECK(st == CNN_ERR_SHAPE && p == NULL, "same rank, wrong dims: %s", cnn_status_str(st));
        T_CHECK(strstr(err, "tensor 'features.0.0.weight': expected shape [2,3,3,3], got [2,3,1,1]"),
                "shape message: %s", err);

        st = weights_get_f32(w, "features.0.0.weight", 1, flat, &p, err, sizeof err);
        T_CHECK(st == CNN_ERR_SHAPE && strstr(err, "expected shape [6], got [2,3,1,1]"), "rank mismatch: %s",
                err);

        err[0] = '\0';
        st = weights_get_f32(w, "classifier.3.weight", 1, flat, &p, err, sizeof err);
        T_CHECK(st == CNN_ERR_MISSING && p == NULL, "missing: %s", cnn_status_str(st));
        T_CHECK(strstr(err, "missing tensor 'classifier.3.weight'"), "missing message: %s", err);

        st = weights_get_f32(w, "features.0.0.weight", WEIGHTS_MAX_DIMS + 1, ok_shape, &p, err, sizeof err);
        T_CHECK(st == CNN_ERR_ARG, "too many expected dims: %s", cnn_status_str(st));
    }
    weights_free(w);
    unlink(path);
    test_end("get_f32_ok_missing_shape");
}

static void test_unused(const char *dir)
{
    test_begin();
    char path[PATH_MAX], err[ERR_BYTES] = "", buf[128];
    unsigned char data[16] = {0};
    weights *w = NULL;
    T_CHECK(st_write(path, sizeof path, dir, "unused.safetensors",
                     "{\"alpha\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"beta\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                     "\"gamma\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                     "\"delta\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
                     data, sizeof data) == 0,
            "write");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (w) {
        const int64_t one[1] = {1};
        const float *p;
        size_t n = weights_unused(w, buf, sizeof buf);
        T_CHECK(n == 4 && strcmp(buf, "alpha, beta, gamma, delta") == 0, "all unused: %zu '%s'", n, buf);
        T_CHECK(weights_get_f32(w, "beta", 1, one, &p, err, sizeof err) == CNN_OK, "fetch beta: %s", err);
        n = weights_unused(w, buf, sizeof buf);
        T_CHECK(n == 3 && strcmp(buf, "alpha, gamma, delta") == 0, "after beta: %zu '%s'", n, buf);
        n = weights_unused(w, buf, 16);
        T_CHECK(n == 3 && strcmp(buf, "alpha, ...") == 0, "truncated: %zu '%s'", n, buf);
        n = weights_unused(w, buf, 4);
        T_CHECK(n == 3 && strcmp(buf, "...") == 0, "tiny buffer: %zu '%s'", n, buf);
        T_CHECK(weights_unused(w, NULL, 0) == 3, "NULL buffer still counts");
        T_CHECK(weights_get_f32(w, "alpha", 1, one, &p, err, sizeof err) == CNN_OK, "fetch alpha");
        T_CHECK(weights_get_f32(w, "gamma", 1, one, &p, err, sizeof err) == CNN_OK, "fetch gamma");
        n = weights_unused(w, buf, sizeof buf);
        T_CHECK(n == 1 && strcmp(buf, "delta") == 0, "last one fits exactly: %zu '%s'", n, buf);
        n = weights_unused(w, buf, 6);
        T_CHECK(n == 1 && strcmp(buf, "delta") == 0, "exact fit: %zu '%s'", n, buf);
        T_CHECK(weights_get_f32(w, "delta", 1, one, &p, err, sizeof err) == CNN_OK, "fetch delta");
        n = weights_unused(w, buf, sizeof buf);
        T_CHECK(n == 0 && buf[0] == '\0', "none unused: %zu '%s'", n, buf);
    }
    weights_free(w);
    unlink(path);
    test_end("unused_list");
}

/* Many tensors written in reverse name order: every name must be found and map to its own data. */
static void test_lookup_many(const char *dir)
{
    test_begin();
    enum { N = 600 };
    size_t h_cap = (size_t)N * 80 + 16;
    char *header = malloc(h_cap);
    unsigned char *data = malloc(N * 4);
    char path[PATH_MAX], err[ERR_BYTES] = "", name[32];
    weights *w = NULL;
    T_CHECK(header && data, "alloc");
    if (header && data) {
        size_t pos = (size_t)snprintf(header, h_cap, "{");
        for (int i = 0; i < N; i++) {
            int id = N - 1 - i;
            put_f32le(data + 4 * i, (float)id);
            pos += (size_t)snprintf(header + pos, h_cap - pos,
                                    "%s\"layer%d.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                    i ? "," : "", id, 4 * i, 4 * i + 4);
        }
        snprintf(header + pos, h_cap - pos, "}");
        T_CHECK(st_write(path, sizeof path, dir, "many.safetensors", header, data, N * 4) == 0, "write");
        cnn_status st = weights_open(&w, path, err, sizeof err);
        T_CHECK(st == CNN_OK && w && weights_count(w) == N, "open: %s: %s", cnn_status_str(st), err);
        for (int id = 0; w && id < N; id++) {
            snprintf(name, sizeof name, "layer%d.weight", id);
            const weights_tensor *t = weights_find(w, name);
            T_CHECK(t && strcmp(t->name, name) == 0 && t->data[0] == (float)id, "lookup %s", name);
        }
        T_CHECK(weights_find(w, "layer600.weight") == NULL && weights_find(w, "") == NULL, "absent names");
        weights_free(w);
        unlink(path);
    }
    free(header);
    free(data);
    test_end("lookup_many_tensors");
}

/* Writes header+data (header_len override when non-zero), expects weights_open to fail with want,
 * *out NULL and a message containing the file name and each non-NULL substring. */
static void expect_reject(const char *dir, const char *case_name, const char *header, uint64_t header_len,
                          const void *data, size_t data_bytes, cnn_status want, const char *sub1,
                          const char *sub2)
{
    test_begin();
    char path[PATH_MAX], err[ERR_BYTES] = "";
    weights *w = (weights *)&err; /* must be reset to NULL on failure */
    T_CHECK(st_write_raw(path, sizeof path, dir, case_name, header, header_len, data, data_bytes) == 0,
            "write failed");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == want, "status %s, want %s (%s)", cnn_status_str(st), cnn_status_str(want), err);
    T_CHECK(w == NULL, "out must be NULL on failure");
    if (st == CNN_OK)
        weights_free(w);
    T_CHECK(strstr(err, case_name), "message should name the file: %s", err);
    T_CHECK(!sub1 || strstr(err, sub1), "message lacks '%s': %s", sub1, err);
    T_CHECK(!sub2 || strstr(err, sub2), "message lacks '%s': %s", sub2, err);
    unlink(path);
    test_end(case_name);
}

static void test_rejections(const char *dir)
{
    unsigned char zeros[64] = {0};
    char path[PATH_MAX], err[ERR_BYTES];

    /* too short to hold the header length */
    const char *short_files[2] = {"reject_empty", "reject_4_bytes"};
    for (int i = 0; i < 2; i++) {
        test_begin();
        weights *w = NULL;
        T_CHECK(file_write(path, sizeof path, dir, short_files[i], zeros, (size_t)(4 * i)) == 0, "write");
        err[0] = '\0';
        cnn_status st = weights_open(&w, path, err, sizeof err);
        T_CHECK(st == CNN_ERR_FORMAT && !w, "status %s (%s)", cnn_status_str(st), err);
        T_CHECK(strstr(err, short_files[i]) && strstr(err, "shorter than"), "message: %s", err);
        weights_free(w);
        unlink(path);
        test_end(short_files[i]);
    }

    const char *x_ok = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_reject(dir, "reject_huge_header_len", x_ok, (uint64_t)1 << 62, zeros, 8, CNN_ERR_FORMAT,
                  "header length 4611686018427387904", "limit");
    expect_reject(dir, "reject_header_len_past_file", x_ok, 4096, zeros, 8, CNN_ERR_FORMAT, "header length 4096",
                  "past the end");
    expect_reject(dir, "reject_header_len_zero", "", 0, NULL, 0, CNN_ERR_FORMAT, "not valid JSON", NULL);
    expect_reject(dir, "reject_bad_json", "{\"x\":{\"dtype\":", 0, zeros, 8, CNN_ERR_FORMAT, "not valid JSON",
                  NULL);
    expect_reject(dir, "reject_json_array", "[1,2,3]", 0, NULL, 0, CNN_ERR_FORMAT, "not an object", NULL);
    expect_reject(dir, "reject_duplicate_key", "{\"x\":{},\"x\":{}}", 0, NULL, 0, CNN_ERR_FORMAT,
                  "not valid JSON", "duplicate");
    expect_reject(dir, "reject_dtype_i64", "{\"x\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 0,
                  zeros, 8, CNN_ERR_DTYPE, "tensor 'x' has dtype I64; supported: F32, F16, BF16", NULL);
    expect_reject(dir, "reject_dtype_missing", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, zeros, 4,
                  CNN_ERR_FORMAT, "tensor 'x'", "dtype");
    expect_reject(dir, "reject_entry_not_object", "{\"x\":[1]}", 0, NULL, 0, CNN_ERR_FORMAT, "tensor 'x'",
                  "not an object");
    expect_reject(dir, "reject_shape_negative",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 0, zeros, 4, CNN_ERR_FORMAT,
                  "tensor 'x'", "shape[0]");
    expect_reject(dir, "reject_shape_float",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,2.0],\"data_offsets\":[0,8]}}", 0, zeros, 8,
                  CNN_ERR_FORMAT, "tensor 'x'", "shape[1]");
    expect_reject(dir, "reject_shape_missing", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 0, zeros, 4,
                  CNN_ERR_FORMAT, "tensor 'x'", "shape");
    expect_reject(dir, "reject_shape_9_dims",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0, zeros, 4,
                  CNN_ERR_FORMAT, "tensor 'x'", "9 dims");
    expect_reject(dir, "reject_elem_overflow",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 0,
                  zeros, 4, CNN_ERR_FORMAT, "tensor 'x'", "overflow");
    expect_reject(dir, "reject_byte_overflow",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 0, zeros,
                  4, CNN_ERR_FORMAT, "tensor 'x'", "overflow");
    expect_reject(dir, "reject_offsets_reversed",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, zeros, 8, CNN_ERR_FORMAT,
                  "tensor 'x'", "end before begin");
    expect_reject(dir, "reject_offsets_three", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}",
                  0, zeros, 8, CNN_ERR_FORMAT, "tensor 'x'", "data_offsets");
    expect_reject(dir, "reject_offsets_negative",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,-4]}}", 0, zeros, 8, CNN_ERR_FORMAT,
                  "tensor 'x'", "data_offsets");
    expect_reject(dir, "reject_truncated", "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0,
                  zeros, 8, CNN_ERR_FORMAT, "tensor 'x'", "truncated");
    expect_reject(dir, "reject_overlap",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  0, zeros, 12, CNN_ERR_FORMAT, "'a' [0, 8) and 'b' [4, 12) overlap", NULL);
    expect_reject(dir, "reject_overlap_nested",
                  "{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                  "\"mid\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[2,4]},"
                  "\"late\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[10,12]}}",
                  0, zeros, 16, CNN_ERR_FORMAT, "'big'", "overlap");
    expect_reject(dir, "reject_size_mismatch",
                  "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, zeros, 12, CNN_ERR_FORMAT,
                  "tensor 'x'", "span 8 bytes but shape and dtype need 12");
    expect_reject(dir, "reject_meta_non_string",
                  "{\"__metadata__\":{\"k\":1},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0,
                  zeros, 4, CNN_ERR_FORMAT, "'k' is not a string", NULL);
    expect_reject(dir, "reject_meta_not_object", "{\"__metadata__\":\"v\"}", 0, NULL, 0, CNN_ERR_FORMAT,
                  "__metadata__ is not an object", NULL);

    test_begin();
    weights *w = NULL;
    snprintf(path, sizeof path, "%s/does_not_exist.safetensors", dir);
    err[0] = '\0';
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_ERR_IO && !w, "status %s", cnn_status_str(st));
    T_CHECK(strstr(err, "does_not_exist.safetensors") && strstr(err, "No such file"), "message: %s", err);
    test_end("reject_nonexistent_path");

    test_begin();
    err[0] = '\0';
    st = weights_open(&w, dir, err, sizeof err);
    T_CHECK(st == CNN_ERR_IO && !w && strstr(err, "not a regular file"), "directory: %s (%s)",
            cnn_status_str(st), err);
    st = weights_open(&w, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_ARG && !w, "NULL path: %s", cnn_status_str(st));
    st = weights_open(&w, dir, NULL, 0);
    T_CHECK(st == CNN_ERR_IO && !w, "NULL err buffer: %s", cnn_status_str(st));
    test_end("reject_directory_and_null_args");
}

/* weights_release drops the whole pages of a tensor in the mapping once (resident bytes fall by
 * exactly them), leaves the values readable (faulted back from the file) and other tensors and
 * converted copies alone. */
static void test_release(const char *dir)
{
    test_begin();
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), n_big = 3 * page / 4 + 5; /* 3 pages + 20 bytes */
    float *data = malloc((n_big + 4) * sizeof(float));
    unsigned char *bytes = malloc((n_big + 4) * sizeof(float) + 8);
    char path[PATH_MAX], err[ERR_BYTES] = "", header[256];
    weights *w = NULL;
    T_CHECK(data && bytes, "out of memory");
    if (!data || !bytes) goto done;
    for (size_t i = 0; i < n_big + 4; i++) {
        data[i] = (float)i * 0.5f - 7.0f;
        put_f32le(bytes + 4 * i, data[i]);
    }
    /* "big" (n_big F32), "small" (4 F32), "half" (4 F16 = 1.0: a converted copy) */
    for (int i = 0; i < 4; i++) put_u16le(bytes + 4 * (n_big + 4) + 2 * i, 0x3c00);
    snprintf(header, sizeof header,
             "{\"big\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
             "\"small\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[%zu,%zu]},"
             "\"half\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[%zu,%zu]}}",
             n_big, 4 * n_big, 4 * n_big, 4 * n_big + 16, 4 * n_big + 16, 4 * n_big + 24);
    T_CHECK(st_write(path, sizeof path, dir, "release.safetensors", header, bytes, 4 * (n_big + 4) + 8) == 0,
            "write failed");
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (!w) goto done;
    const weights_tensor *big = weights_find(w, "big"), *small = weights_find(w, "small"), *half = weights_find(w, "half");
    T_CHECK(big && small && half, "tensors");
    if (!big || !small || !half) goto done;
    const size_t before = weights_resident_bytes(w);
    const uintptr_t lo = ((uintptr_t)big->data + page - 1) / page * page;
    const uintptr_t hi = ((uintptr_t)(big->data + n_big)) / page * page;
    const size_t whole = hi > lo ? (size_t)(hi - lo) : 0;
    T_CHECK(whole >= 2 * page, "the big tensor spans %zu whole pages", whole / page);
    weights_release(w, big->data);
    T_CHECK(big->released && !small->released, "released marks");
    T_CHECK(weights_resident_bytes(w) == before - whole, "resident %zu, want %zu - %zu", weights_resident_bytes(w),
            before, whole);
    weights_release(w, big->data); /* once per tensor */
    weights_release(w, half->data); /* a converted copy: kept */
    weights_release(w, data);       /* not from w */
    T_CHECK(weights_resident_bytes(w) == before - whole && !half->released, "second release / copy / foreign: %zu",
            weights_resident_bytes(w));
    check_values("big after release", big->data, data, n_big);
    check_values("small after release", small->data, data + n_big, 4);
    const float ones[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    check_values("half after release", half->data, ones, 4);
done:
    weights_free(w);
    unlink(path);
    free(data);
    free(bytes);
    test_end("release_drops_whole_pages_once");
}

static void test_null_object(void)
{
    test_begin();
    weights_free(NULL);
    T_CHECK(weights_count(NULL) == 0 && weights_at(NULL, 0) == NULL && weights_find(NULL, "x") == NULL &&
                weights_meta(NULL, "x") == NULL && weights_resident_bytes(NULL) == 0 &&
                weights_path(NULL) == NULL && weights_unused(NULL, NULL, 0) == 0,
            "NULL weights accessors");
    test_end("null_object");
}

static void test_real_file(const char *shared, const char *model, size_t want_count, const char *want_padding)
{
    char path[PATH_MAX], case_name[96], err[ERR_BYTES] = "";
    snprintf(path, sizeof path, "%s/weights/%s.safetensors", shared, model);
    snprintf(case_name, sizeof case_name, "real_%s", model);
    if (access(path, R_OK) != 0) {
        test_skip(case_name, "weights not available");
        return;
    }
    test_begin();
    weights *w = NULL;
    cnn_status st = weights_open(&w, path, err, sizeof err);
    T_CHECK(st == CNN_OK && w, "open: %s: %s", cnn_status_str(st), err);
    if (w) {
        T_CHECK(weights_count(w) == want_count, "count %zu, want %zu", weights_count(w), want_count);
        const char *arch = weights_meta(w, "architecture");
        T_CHECK(arch && strcmp(arch, model) == 0, "architecture = %s", arch ? arch : "(null)");
        const char *pad = weights_meta(w, "padding");
        if (want_padding)
            T_CHECK(pad && strcmp(pad, want_padding) == 0, "padding = %s", pad ? pad : "(null)");
        else
            T_CHECK(pad == NULL, "unexpected padding = %s", pad);
        int all_finite = 1;
        for (size_t i = 0; i < weights_count(w); i++) {
            const weights_tensor *t = weights_at(w, i);
            T_CHECK(t->dtype == WDTYPE_F32 && weights_find(w, t->name) == t, "tensor %s", t->name);
            for (int64_t k = 0; k < t->n_elems; k++)
                all_finite &= isfinite(t->data[k]) != 0;
        }
        T_CHECK(all_finite, "non-finite weight value");
        /* aligned F32 files are used entirely in place */
        T_CHECK(weights_resident_bytes(w) == (size_t)file_size(path), "resident %zu", weights_resident_bytes(w));
        char buf[64];
        T_CHECK(weights_unused(w, buf, sizeof buf) == want_count, "all unused before fetching");
    }
    weights_free(w);
    test_end(case_name);
}

/* ---- writer ---- */

/* Entries of dir whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

static void test_write_roundtrip(const char *dir)
{
    test_begin();
    char path[512], err[ERR_BYTES];
    snprintf(path, sizeof path, "%s/written.safetensors", dir);
    float a[6] = {1.5f, -2.0f, 0.0f, -0.0f, 3.25e-30f, 1e30f}, b[3] = {7, 8, 9}, c[1] = {42};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    weights_out_tensor t[] = {{"z.weight", 2, sa, a}, {"a.bias", 1, sb, b}, {"scalar", 0, NULL, c}};
    weights_meta_kv meta[] = {{"labels", "[\"Apple pie\",\"\u00e9t\u00e9 \\\"x\\\"\"]"}, {"num_classes", "2"}};
    cnn_status s = weights_write(path, t, 3, meta, 2, err, sizeof err);
    T_CHECK(s == CNN_OK, "write: %s", err);
    weights *w = NULL;
    if (s == CNN_OK) s = weights_open(&w, path, err, sizeof err);
    T_CHECK(s == CNN_OK, "open: %s", err);
    if (w) {
        T_CHECK(weights_count(w) == 3, "count %zu", weights_count(w));
        const weights_tensor *ta = weights_find(w, "z.weight"), *tb = weights_find(w, "a.bias"),
                             *tc = weights_find(w, "scalar");
        T_CHECK(ta && ta->n_dims == 2 && ta->shape[0] == 2 && ta->shape[1] == 3 && ta->dtype == WDTYPE_F32,
                "z.weight shape");
        T_CHECK(tb && tb->n_dims == 1 && tb->shape[0] == 3 && tc && tc->n_dims == 0 && tc->n_elems == 1, "shapes");
        if (ta) check_values("z.weight", ta->data, a, 6);
        if (tb) check_values("a.bias", tb->data, b, 3);
        if (tc) check_values("scalar", tc->data, c, 1);
        const char *labels = weights_meta(w, "labels");
        T_CHECK(labels && !strcmp(labels, meta[0].value), "labels metadata '%s'", labels ? labels : "(none)");
        T_CHECK(weights_meta(w, "num_classes") && !strcmp(weights_meta(w, "num_classes"), "2"), "num_classes");
        /* in place: aligned F32 */
        T_CHECK(weights_resident_bytes(w) == (size_t)file_size(path), "resident %zu of %lld",
                weights_resident_bytes(w), (long long)file_size(path));
        weights_free(w);
    }
    /* Same input, same bytes; rewriting replaces the file. */
    char path2[512];
    snprintf(path2, sizeof path2, "%s/written2.safetensors", dir);
    T_CHECK(weights_write(path2, t, 3, meta, 2, err, sizeof err) == CNN_OK, "second write: %s", err);
    FILE *f1 = fopen(path, "rb"), *f2 = fopen(path2, "rb");
    int same = f1 && f2;
    while (same) {
        int x = fgetc(f1), y = fgetc(f2);
        same = x == y;
        if (x == EOF) break;
    }
    T_CHECK(same, "two writes of the same tensors differ");
    if (f1) fclose(f1);
    if (f2) fclose(f2);
    c[0] = 43;
    T_CHECK(weights_write(path, t, 3, meta, 2, err, sizeof err) == CNN_OK, "overwrite: %s", err);
    T_CHECK(weights_open(&w, path, err, sizeof err) == CNN_OK && weights_find(w, "scalar")->data[0] == 43.0f,
            "overwritten value");
    weights_free(w);
    T_CHECK(count_prefixed(dir, ".written") == 0, "temporary files left behind");
    /* header padded to 8 bytes, then exactly the 10 floats */
    unsigned char len8[8] = {0};
    FILE *fh = fopen(path, "rb");
    size_t got = fh ? fread(len8, 1, 8, fh) : 0;
    if (fh) fclose(fh);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
    T_CHECK(got == 8 && hlen % 8 == 0 && (uint64_t)file_size(path) == 8 + hlen + 40, "header %llu, file %lld",
            (unsigned long long)hlen, (long long)file_size(path));
    unlink(path);
    unlink(path2);
    test_end("weights_write: round trip of tensors and metadata (UTF-8, quotes), same bytes twice, overwrite");
}

static void test_write_errors(const char *dir)
{
    test_begin();
    char path[512], err[ERR_BYTES];
    float a[2] = {1, 2};
    int64_t sa[1] = {2}, neg[1] = {-1};
    weights_out_tensor dup[] = {{"x", 1, sa, a}, {"x", 1, sa, a}};
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    T_CHECK(weights_write(path, dup, 2, NULL, 0, err, sizeof err) == CNN_ERR_ARG && strstr(err, "duplicate"),
            "duplicate name: %s", err);
    weights_out_tensor reserved[] = {{"__metadata__", 1, sa, a}};
    T_CHECK(weights_write(path, reserved, 1, NULL, 0, err, sizeof err) == CNN_ERR_ARG, "reserved name");
    weights_out_tensor negative[] = {{"n", 1, neg, a}};
    T_CHECK(weights_write(path, negative, 1, NULL, 0, err, sizeof err) == CNN_ERR_ARG, "negative dimension");
    weights_meta_kv dmeta[] = {{"k", "1"}, {"k", "2"}};
    T_CHECK(weights_write(path, dup, 1, dmeta, 2, err, sizeof err) == CNN_ERR_ARG, "duplicate metadata key");
    T_CHECK(file_size(path) < 0, "nothing written on errors");
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
    T_CHECK(weights_write(path, dup, 1, NULL, 0, err, sizeof err) == CNN_ERR_IO && strstr(err, "temporary file"),
            "missing folder: %s", err);
    test_end("weights_write: bad names, shapes, metadata and folders are errors and write nothing");
}

/* A write that fails half-way (file size limit) leaves the old file intact and no temporary file. */
static void test_write_interrupted(const char *dir)
{
    test_begin();
    char path[512], err[ERR_BYTES];
    snprintf(path, sizeof path, "%s/keep.safetensors", dir);
    float small[1] = {5};
    int64_t s1[1] = {1};
    weights_out_tensor old[] = {{"old", 1, s1, small}};
    T_CHECK(weights_write(path, old, 1, NULL, 0, err, sizeof err) == CNN_OK, "first write: %s", err);
    const off_t old_size = file_size(path);
    enum { N = 1 << 16 };
    float *big = calloc(N, sizeof(float));
    int64_t sn[1] = {N};
    pid_t pid = big ? fork() : -1;
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG instead of killing */
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        weights_out_tensor t[] = {{"big", 1, sn, big}};
        cnn_status s = weights_write(path, t, 1, NULL, 0, err, sizeof err);
        _exit(s == CNN_ERR_IO ? 0 : 1);
    }
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    T_CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the limited write did not fail with an I/O error");
    weights *w = NULL;
    T_CHECK(file_size(path) == old_size && weights_open(&w, path, err, sizeof err) == CNN_OK &&
                weights_find(w, "old") && !weights_find(w, "big"), "old file not intact: %s", err);
    weights_free(w);
    T_CHECK(count_prefixed(dir, ".keep") == 0, "temporary file left behind");
    free(big);
    unlink(path);
    test_end("weights_write: a write failing half-way keeps the old file and leaves no temporary file");
}

int main(void)
{
    char dir[] = "/tmp/test_weights.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("not ok - mkdtemp: cannot create temp dir\n");
        return 1;
    }
    test_f32_in_place(dir);
    test_f16_bf16(dir);
    test_unaligned_f32(dir);
    test_metadata(dir);
    test_scalar_and_empty(dir);
    test_get_f32(dir);
    test_unused(dir);
    test_lookup_many(dir);
    test_rejections(dir);
    test_release(dir);
    test_null_object();
    test_write_roundtrip(dir);
    test_write_errors(dir);
    test_write_interrupted(dir);

    const char *shared = getenv("CNN_SHARED");
    if (!shared)
        shared = "../shared";
    test_real_file(shared, "mobilenet_v3_small", 210, "tf_same");
    test_real_file(shared, "shufflenet_v2_x1_0", 282, NULL);

    if (rmdir(dir) != 0)
        printf("# warning: could not remove %s\n", dir);
    return test_finish();
}
