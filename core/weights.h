/* safetensors loader: the file is mmapped read-only once; F32 tensors whose data is 4-byte aligned
 * are used in place, F16/BF16 (and unaligned F32) are converted to an owned F32 copy at open.
 * After weights_open returns, a weights object is read-only and safe to share between threads
 * (the "used" marks are only touched by model building, which is single-threaded). */
#ifndef CNN_WEIGHTS_H
#define CNN_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define WEIGHTS_MAX_DIMS 8

typedef enum { WDTYPE_F32 = 0, WDTYPE_F16, WDTYPE_BF16 } weights_dtype;

typedef struct {
    const char *name;
    weights_dtype dtype;     /* dtype in the file */
    int n_dims;
    int64_t shape[WEIGHTS_MAX_DIMS];
    int64_t n_elems;
    const float *data;       /* F32 values (in the mapping, or an owned converted copy) */
    size_t file_bytes;       /* bytes the tensor occupies in the file */
    int used;                /* set by weights_get_f32 */
    int released;            /* set by weights_release */
} weights_tensor;

typedef struct weights weights; /* opaque */

/* Open and validate a safetensors file: header length sane (<= 100 MiB and within the file),
 * JSON parses, every entry has a known dtype, shape and data_offsets with end-begin equal to
 * n_elems*dtype size, all ranges inside the data section and non-overlapping. */
cnn_status weights_open(weights **out, const char *path, char *err, size_t err_bytes);
void weights_free(weights *w);

size_t weights_count(const weights *w);
const weights_tensor *weights_at(const weights *w, size_t i);
const weights_tensor *weights_find(const weights *w, const char *name);

/* String value of __metadata__[key], or NULL. */
const char *weights_meta(const weights *w, const char *key);

/* Bytes of the file mapping (less what weights_release dropped) + bytes of converted copies. */
size_t weights_resident_bytes(const weights *w);
/* The caller copied tensor data (a weights_get_f32 result) and reads it no more through w: the
 * mapping's whole pages inside the tensor leave the process's resident set (MADV_DONTNEED; a
 * later read faults them back in from the file, unchanged) and weights_resident_bytes. Once per
 * tensor; a converted copy, or data not from w, is left alone. Not while other threads read the
 * tensor's pages through w (model building only). */
void weights_release(weights *w, const float *data);
const char *weights_path(const weights *w);

/* Fetch a required tensor with exactly this shape; marks it used.
 * Errors (message names the tensor): CNN_ERR_MISSING, CNN_ERR_SHAPE ("expected [a,b], got [c]"). */
cnn_status weights_get_f32(weights *w, const char *name, int n_dims, const int64_t *shape,
                           const float **out, char *err, size_t err_bytes);

/* ---- writer ---- */

/* One F32 tensor to write. */
typedef struct {
    const char *name;
    int n_dims;
    const int64_t *shape;
    const float *data;       /* product(shape) values */
} weights_out_tensor;

typedef struct {
    const char *key, *value; /* a __metadata__ string entry */
} weights_meta_kv;

/* Writes a safetensors file atomically: the tensors (as F32, data in the given order) and metadata
 * go to a temporary file beside path (".<name>.tmp-XXXXXX"), which is fsynced and renamed over path,
 * then the folder is fsynced; on any failure the temporary file is removed and path is untouched, so
 * path is always either the old file or the complete new one. The header JSON has sorted keys and is
 * padded with spaces to a multiple of 8 bytes: the same input gives the same bytes. Errors:
 * CNN_ERR_ARG (duplicate or empty name, name "__metadata__", negative dimension), CNN_ERR_IO,
 * CNN_ERR_NOMEM. */
cnn_status weights_write(const char *path, const weights_out_tensor *tensors, size_t n_tensors,
                         const weights_meta_kv *meta, size_t n_meta, char *err, size_t err_bytes);

/* Number of tensors never fetched; names written (comma separated, truncated) into buf. */
size_t weights_unused(const weights *w, char *buf, size_t buf_bytes);

#endif
