/* safetensors loader. Layout: u64 LE header length N, N bytes of JSON, then the data section.
 * weights_open validates the whole header up front so that every later accessor is a plain read. */
#include "weights.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* F32 tensors are used in place, which reads the file's little-endian floats as native floats. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "weights.c assumes a little-endian host"
#endif

#define WEIGHTS_MAX_HEADER_BYTES ((uint64_t)100 << 20)
#define WEIGHTS_META_KEY "__metadata__"
#define WEIGHTS_SHAPE_STR_BYTES (WEIGHTS_MAX_DIMS * 22 + 4)

typedef struct {
    const char *key;
    const char *value;
} weights_meta_entry;

struct weights {
    char *path;
    unsigned char *map; /* whole file, PROT_READ / MAP_PRIVATE */
    size_t map_bytes;
    weights_tensor *tensors; /* header order */
    size_t n_tensors;
    weights_tensor **by_name; /* sorted by name, for bsearch */
    weights_meta_entry *meta;
    size_t n_meta;
    char *strings; /* arena holding tensor names and metadata keys/values */
    float *owned;  /* one block with every converted (F16/BF16/unaligned F32) tensor */
    size_t owned_bytes;
    size_t released_bytes; /* pages of the mapping dropped by weights_release */
};

/* Byte range of one tensor inside the data section; only needed while validating. */
typedef struct {
    uint64_t begin, end;
    size_t idx;
} weights_range;

/* data pointer for tensors with no elements (never dereferenced, but callers may expect non-NULL) */
static const float weights_empty_data[1];

static size_t weights_dtype_bytes(weights_dtype d)
{
    switch (d) {
    case WDTYPE_F32: return 4;
    case WDTYPE_F16: return 2;
    case WDTYPE_BF16: return 2;
    }
    return 0;
}

static int weights_parse_dtype(const char *s, weights_dtype *out)
{
    if (strcmp(s, "F32") == 0) *out = WDTYPE_F32;
    else if (strcmp(s, "F16") == 0) *out = WDTYPE_F16;
    else if (strcmp(s, "BF16") == 0) *out = WDTYPE_BF16;
    else return 0;
    return 1;
}

static float weights_bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact for every input: subnormals are normalised, infinities kept, NaNs
 * keep their payload and come out quiet (as the F16C instruction and PyTorch do). */
static float weights_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;

    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0);
    } else if (exp != 0) {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* subnormal: value = mant * 2^-24; shift the leading one into the implicit bit */
        uint32_t e = 127 - 14;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    return weights_bits_to_f32(bits);
}

static void weights_convert(const weights_tensor *t, const unsigned char *src, float *dst)
{
    size_t n = (size_t)t->n_elems;
    switch (t->dtype) {
    case WDTYPE_F32:
        for (size_t i = 0; i < n; i++, src += 4)
            dst[i] = weights_bits_to_f32((uint32_t)src[0] | (uint32_t)src[1] << 8 |
                                         (uint32_t)src[2] << 16 | (uint32_t)src[3] << 24);
        break;
    case WDTYPE_F16:
        for (size_t i = 0; i < n; i++, src += 2)
            dst[i] = weights_f16_to_f32((uint16_t)(src[0] | src[1] << 8));
        break;
    case WDTYPE_BF16:
        /* bfloat16 is the top half of a binary32 */
        for (size_t i = 0; i < n; i++, src += 2)
            dst[i] = weights_bits_to_f32((uint32_t)src[0] << 16 | (uint32_t)src[1] << 24);
        break;
    }
}

/* "[16,3,3,3]" into buf (WEIGHTS_SHAPE_STR_BYTES always suffices). */
static void weights_format_shape(char *buf, size_t buf_bytes, int n_dims, const int64_t *shape)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf, buf_bytes, "[");
    for (int i = 0; i < n_dims && pos < buf_bytes; i++)
        pos += (size_t)snprintf(buf + pos, buf_bytes - pos, "%s%" PRId64, i ? "," : "", shape[i]);
    if (pos < buf_bytes)
        snprintf(buf + pos, buf_bytes - pos, "]");
}

static int weights_cmp_range(const void *a, const void *b)
{
    const weights_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int weights_cmp_by_name(const void *a, const void *b)
{
    const weights_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int weights_cmp_key_name(const void *key, const void *elem)
{
    const weights_tensor *const *t = elem;
    return strcmp(key, (*t)->name);
}

/* Reads a JSON integer >= 0 into *out; 0 if j is not one. */
static int weights_json_uint(const json_t *j, int64_t *out)
{
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return 0;
    *out = (int64_t)json_integer_value(j);
    return 1;
}

/* Validate one header entry and fill t (except name/data) and r (except idx). */
static cnn_status weights_parse_entry(const char *path, const char *name, const json_t *entry,
                                      uint64_t data_bytes, weights_tensor *t, weights_range *r,
                                      char *err, size_t err_bytes)
{
    if (!json_is_object(entry))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path,
                       name);

    const json_t *jdtype = json_object_get(entry, "dtype");
    if (!json_is_string(jdtype))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype",
                       path, name);
    if (!weights_parse_dtype(json_string_value(jdtype), &t->dtype))
        return cnn_err(err, err_bytes, CNN_ERR_DTYPE,
                       "%s: tensor '%s' has dtype %s; supported: F32, F16, BF16", path, name,
                       json_string_value(jdtype));

    const json_t *jshape = json_object_get(entry, "shape");
    if (!json_is_array(jshape))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: tensor '%s': missing or non-array shape", path,
                       name);
    if (json_array_size(jshape) > WEIGHTS_MAX_DIMS)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: tensor '%s': shape has %zu dims (max %d)", path,
                       name, json_array_size(jshape), WEIGHTS_MAX_DIMS);
    t->n_dims = (int)json_array_size(jshape);
    t->n_elems = 1;
    for (int i = 0; i < t->n_dims; i++) {
        if (!weights_json_uint(json_array_get(jshape, (size_t)i), &t->shape[i]))
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                           "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        if (__builtin_mul_overflow(t->n_elems, t->shape[i], &t->n_elems))
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: tensor '%s': element count overflows",
                           path, name);
    }

    const json_t *joffs = json_object_get(entry, "data_offsets");
    int64_t begin, end;
    if (!json_is_array(joffs) || json_array_size(joffs) != 2 ||
        !weights_json_uint(json_array_get(joffs, 0), &begin) ||
        !weights_json_uint(json_array_get(joffs, 1), &end))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets must be [begin, end] of non-negative integers", path,
                       name);
    if (end < begin)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] end before begin", path,
                       name, begin, end);

    uint64_t want_bytes;
    if (__builtin_mul_overflow((uint64_t)t->n_elems, (uint64_t)weights_dtype_bytes(t->dtype), &want_bytes))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: tensor '%s': byte size overflows", path, name);
    if ((uint64_t)(end - begin) != want_bytes)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets span %" PRId64 " bytes but shape and dtype need %" PRIu64,
                       path, name, end - begin, want_bytes);
    if ((uint64_t)end > data_bytes)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                       "%s: tensor '%s': data ends at %" PRId64 " but the data section has only %" PRIu64
                       " bytes (truncated file?)",
                       path, name, end, data_bytes);

    t->file_bytes = (size_t)want_bytes;
    t->used = 0;
    r->begin = (uint64_t)begin;
    r->end = (uint64_t)end;
    return CNN_OK;
}

/* Maps the file; rejects non-regular and too-short files. */
static cnn_status weights_map_file(weights *w, char *err, size_t err_bytes)
{
    cnn_status st = CNN_OK;
    struct stat sb;
    int fd = open(w->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cnn_err(err, err_bytes, CNN_ERR_IO, "%s: cannot open: %s", w->path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        st = cnn_err(err, err_bytes, CNN_ERR_IO, "%s: cannot stat: %s", w->path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = cnn_err(err, err_bytes, CNN_ERR_IO, "%s: not a regular file", w->path);
        goto done;
    }
    if (sb.st_size < 8) {
        st = cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                     "%s: file is %lld bytes, shorter than the 8-byte safetensors header length", w->path,
                     (long long)sb.st_size);
        goto done;
    }
    if ((uintmax_t)sb.st_size > SIZE_MAX) {
        st = cnn_err(err, err_bytes, CNN_ERR_TOO_LARGE, "%s: file too large to map", w->path);
        goto done;
    }
    /* MAP_POPULATE: page tables filled now, so the first inference does not take a page fault per
     * weight page it streams (AlexNet's 235 MB of linear weights: ~5000 faults, fault-around) */
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) {
        st = cnn_err(err, err_bytes, CNN_ERR_IO, "%s: mmap failed: %s", w->path, strerror(errno));
        goto done;
    }
    w->map = map;
    w->map_bytes = (size_t)sb.st_size;
done:
    close(fd);
    return st;
}

/* First pass over the header: validates __metadata__ and sizes the tensor table and string arena. */
static cnn_status weights_measure(const weights *w, json_t *root, size_t *n_tensors, size_t *n_meta,
                                  size_t *str_bytes, char *err, size_t err_bytes)
{
    const char *key;
    json_t *val;
    *n_tensors = *n_meta = *str_bytes = 0;
    json_object_foreach(root, key, val) {
        if (strcmp(key, WEIGHTS_META_KEY) != 0) {
            (*n_tensors)++;
            *str_bytes += strlen(key) + 1;
            continue;
        }
        if (!json_is_object(val))
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: %s is not an object", w->path,
                           WEIGHTS_META_KEY);
        const char *mkey;
        json_t *mval;
        json_object_foreach(val, mkey, mval) {
            if (!json_is_string(mval))
                return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: %s value for '%s' is not a string",
                               w->path, WEIGHTS_META_KEY, mkey);
            (*n_meta)++;
            *str_bytes += strlen(mkey) + 1 + strlen(json_string_value(mval)) + 1;
        }
    }
    return CNN_OK;
}

static char *weights_arena_copy(char **cursor, const char *s)
{
    size_t n = strlen(s) + 1;
    char *dst = *cursor;
    memcpy(dst, s, n);
    *cursor += n;
    return dst;
}

/* Reads the header length and parses the JSON header into *root; *data / *data_bytes: the data
 * section after it. */
static cnn_status weights_read_header(const weights *w, json_t **root, const unsigned char **data,
                                      uint64_t *data_bytes, char *err, size_t err_bytes)
{
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--)
        header_bytes = header_bytes << 8 | w->map[i];
    if (header_bytes > WEIGHTS_MAX_HEADER_BYTES)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                       "%s: header length %" PRIu64 " exceeds the %" PRIu64 "-byte limit", w->path,
                       header_bytes, WEIGHTS_MAX_HEADER_BYTES);
    if (header_bytes > w->map_bytes - 8)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                       "%s: header length %" PRIu64 " runs past the end of the %zu-byte file", w->path,
                       header_bytes, w->map_bytes);
    *data = w->map + 8 + header_bytes;
    *data_bytes = w->map_bytes - 8 - header_bytes;

    json_error_t jerr;
    *root = json_loadb((const char *)w->map + 8, (size_t)header_bytes, JSON_REJECT_DUPLICATES, &jerr);
    if (!*root)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                       w->path, jerr.text, jerr.line, jerr.column);
    if (!json_is_object(*root))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: header JSON is not an object", w->path);
    return CNN_OK;
}

/* Builds the tensor table (header order), the name index, the metadata and the string arena from
 * the header, and the tensors' byte ranges into *ranges (w->n_tensors, freed by the caller). */
static cnn_status weights_build_tables(weights *w, json_t *root, uint64_t data_bytes, weights_range **ranges,
                                       char *err, size_t err_bytes)
{
    size_t str_bytes;
    cnn_status st = weights_measure(w, root, &w->n_tensors, &w->n_meta, &str_bytes, err, err_bytes);
    if (st != CNN_OK)
        return st;
    w->tensors = calloc(w->n_tensors ? w->n_tensors : 1, sizeof *w->tensors);
    w->by_name = calloc(w->n_tensors ? w->n_tensors : 1, sizeof *w->by_name);
    *ranges = calloc(w->n_tensors ? w->n_tensors : 1, sizeof **ranges);
    w->meta = calloc(w->n_meta ? w->n_meta : 1, sizeof *w->meta);
    w->strings = malloc(str_bytes ? str_bytes : 1);
    if (!w->tensors || !w->by_name || !*ranges || !w->meta || !w->strings)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "%s: out of memory for %zu tensors", w->path, w->n_tensors);

    /* Second pass: parse entries in header order, copy names and metadata into the arena. */
    char *cursor = w->strings;
    size_t i_tensor = 0, i_meta = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, WEIGHTS_META_KEY) == 0) {
            const char *mkey;
            json_t *mval;
            json_object_foreach(val, mkey, mval) {
                w->meta[i_meta].key = weights_arena_copy(&cursor, mkey);
                w->meta[i_meta].value = weights_arena_copy(&cursor, json_string_value(mval));
                i_meta++;
            }
            continue;
        }
        weights_tensor *t = &w->tensors[i_tensor];
        st = weights_parse_entry(w->path, key, val, data_bytes, t, &(*ranges)[i_tensor], err, err_bytes);
        if (st != CNN_OK)
            return st;
        t->name = weights_arena_copy(&cursor, key);
        (*ranges)[i_tensor].idx = i_tensor;
        w->by_name[i_tensor] = t;
        i_tensor++;
    }
    assert(i_tensor == w->n_tensors && i_meta == w->n_meta);
    return CNN_OK;
}

/* Sorts ranges by start and rejects overlapping non-empty ones. Stopping at the first overlap means
 * the previous non-empty range is always the one reaching furthest. */
static cnn_status weights_check_overlaps(const weights *w, weights_range *ranges, char *err, size_t err_bytes)
{
    qsort(ranges, w->n_tensors, sizeof *ranges, weights_cmp_range);
    const weights_range *last = NULL;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const weights_range *r = &ranges[i];
        if (r->begin == r->end)
            continue;
        if (last && r->begin < last->end)
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                           "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                           ") overlap",
                           w->path, w->tensors[last->idx].name, last->begin, last->end,
                           w->tensors[r->idx].name, r->begin, r->end);
        last = r;
    }
    return CNN_OK;
}

/* Points F32 tensors into the mapping where aligned; converts the rest into one owned block. */
static cnn_status weights_place_data(weights *w, const weights_range *ranges, const unsigned char *data,
                                     char *err, size_t err_bytes)
{
    size_t n_owned = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const weights_range *r = &ranges[i];
        weights_tensor *t = &w->tensors[r->idx];
        const unsigned char *src = data + r->begin;
        if (t->n_elems == 0)
            t->data = weights_empty_data;
        else if (t->dtype == WDTYPE_F32 && (uintptr_t)src % _Alignof(float) == 0)
            t->data = (const float *)(const void *)src;
        else
            n_owned += (size_t)t->n_elems;
    }
    if (!n_owned)
        return CNN_OK;
    w->owned_bytes = n_owned * sizeof(float);
    w->owned = malloc(w->owned_bytes);
    if (!w->owned)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "%s: out of memory converting %zu values to F32",
                       w->path, n_owned);
    float *dst = w->owned;
    for (size_t i = 0; i < w->n_tensors; i++) {
        weights_tensor *t = &w->tensors[ranges[i].idx];
        if (t->data)
            continue;
        weights_convert(t, data + ranges[i].begin, dst);
        t->data = dst;
        dst += t->n_elems;
    }
    return CNN_OK;
}

cnn_status weights_open(weights **out, const char *path, char *err, size_t err_bytes)
{
    assert(out);
    cnn_status st = CNN_OK;
    json_t *root = NULL;
    weights_range *ranges = NULL;
    weights *w = NULL;
    const unsigned char *data = NULL;
    uint64_t data_bytes = 0;

    *out = NULL;
    if (!path)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "weights_open: path is NULL");
    w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if ((st = weights_map_file(w, err, err_bytes)) != CNN_OK ||
        (st = weights_read_header(w, &root, &data, &data_bytes, err, err_bytes)) != CNN_OK ||
        (st = weights_build_tables(w, root, data_bytes, &ranges, err, err_bytes)) != CNN_OK ||
        (st = weights_check_overlaps(w, ranges, err, err_bytes)) != CNN_OK ||
        (st = weights_place_data(w, ranges, data, err, err_bytes)) != CNN_OK)
        goto fail;
    qsort(w->by_name, w->n_tensors, sizeof *w->by_name, weights_cmp_by_name);
    json_decref(root);
    free(ranges);
    *out = w;
    return CNN_OK;

fail:
    json_decref(root);
    free(ranges);
    weights_free(w);
    return st;
}

void weights_free(weights *w)
{
    if (!w)
        return;
    if (w->map)
        munmap(w->map, w->map_bytes);
    free(w->owned);
    free(w->strings);
    free(w->meta);
    free(w->by_name);
    free(w->tensors);
    free(w->path);
    free(w);
}

size_t weights_count(const weights *w) { return w ? w->n_tensors : 0; }

const weights_tensor *weights_at(const weights *w, size_t i)
{
    return w && i < w->n_tensors ? &w->tensors[i] : NULL;
}

static weights_tensor *weights_lookup(const weights *w, const char *name)
{
    if (!w || !name)
        return NULL;
    weights_tensor **hit = bsearch(name, w->by_name, w->n_tensors, sizeof *w->by_name, weights_cmp_key_name);
    return hit ? *hit : NULL;
}

const weights_tensor *weights_find(const weights *w, const char *name) { return weights_lookup(w, name); }

/* Linear: files carry a handful of metadata keys. */
const char *weights_meta(const weights *w, const char *key)
{
    if (!w || !key)
        return NULL;
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0)
            return w->meta[i].value;
    return NULL;
}

size_t weights_resident_bytes(const weights *w)
{
    return w ? w->map_bytes - w->released_bytes + w->owned_bytes : 0;
}

void weights_release(weights *w, const float *data)
{
    if (!w || !w->map || !data) return;
    const unsigned char *p = (const unsigned char *)data;
    if (p < w->map || p >= w->map + w->map_bytes) return; /* a converted copy, or not ours */
    for (size_t i = 0; i < w->n_tensors; i++) {
        weights_tensor *t = &w->tensors[i];
        if (t->data != data || t->released) continue;
        t->released = 1;
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        const uintptr_t lo = ((uintptr_t)p + page - 1) / page * page;
        const uintptr_t hi = ((uintptr_t)p + (uintptr_t)t->n_elems * sizeof(float)) / page * page;
        if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0) w->released_bytes += hi - lo;
        return;
    }
}

const char *weights_path(const weights *w) { return w ? w->path : NULL; }

cnn_status weights_get_f32(weights *w, const char *name, int n_dims, const int64_t *shape,
                           const float **out, char *err, size_t err_bytes)
{
    assert(w && name && out);
    *out = NULL;
    if (n_dims < 0 || n_dims > WEIGHTS_MAX_DIMS || (n_dims > 0 && !shape))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "tensor '%s': invalid expected shape (%d dims)", name,
                       n_dims);
    weights_tensor *t = weights_lookup(w, name);
    if (!t)
        return cnn_err(err, err_bytes, CNN_ERR_MISSING, "missing tensor '%s' in %s", name, w->path);

    int same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[WEIGHTS_SHAPE_STR_BYTES], got[WEIGHTS_SHAPE_STR_BYTES];
        weights_format_shape(want, sizeof want, n_dims, shape);
        weights_format_shape(got, sizeof got, t->n_dims, t->shape);
        return cnn_err(err, err_bytes, CNN_ERR_SHAPE, "tensor '%s': expected shape %s, got %s (in %s)", name,
                       want, got, w->path);
    }
    t->used = 1;
    *out = t->data;
    return CNN_OK;
}

size_t weights_unused(const weights *w, char *buf, size_t buf_bytes)
{
    static const char ellipsis[] = ", ...";
    size_t n_unused = 0, n_left = 0, pos = 0;
    int truncated = 0;

    if (!w)
        return 0;
    for (size_t i = 0; i < w->n_tensors; i++)
        n_left += !w->tensors[i].used;
    if (buf && buf_bytes)
        buf[0] = '\0';
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (w->tensors[i].used)
            continue;
        n_unused++;
        n_left--;
        if (!buf || !buf_bytes || truncated)
            continue;
        const char *sep = pos ? ", " : "";
        size_t need = strlen(sep) + strlen(w->tensors[i].name);
        /* keep room for the ellipsis unless this is the last name */
        size_t reserve = n_left ? sizeof ellipsis - 1 : 0;
        if (pos + need + reserve < buf_bytes) {
            pos += (size_t)snprintf(buf + pos, buf_bytes - pos, "%s%s", sep, w->tensors[i].name);
        } else {
            truncated = 1;
            const char *tail = pos ? ellipsis : ellipsis + 2;
            if (pos + strlen(tail) < buf_bytes)
                pos += (size_t)snprintf(buf + pos, buf_bytes - pos, "%s", tail);
        }
    }
    return n_unused;
}
