/* Status codes shared by every cnnserve module. Library code returns these and writes human-readable
 * detail into a caller-supplied buffer (never a global). */
#ifndef CNN_STATUS_H
#define CNN_STATUS_H

#include <stddef.h>

typedef enum {
    CNN_OK = 0,
    CNN_ERR_NOMEM,       /* allocation failed */
    CNN_ERR_IO,          /* open/read/mmap failed */
    CNN_ERR_FORMAT,      /* malformed file or payload (bad header, bad JSON, offsets out of range) */
    CNN_ERR_SHAPE,       /* tensor present with the wrong shape */
    CNN_ERR_DTYPE,       /* unsupported dtype */
    CNN_ERR_MISSING,     /* a required tensor / item is absent */
    CNN_ERR_ARG,         /* invalid argument from the caller */
    CNN_ERR_UNSUPPORTED, /* unsupported format (e.g. image type not JPEG/PNG/WebP) */
    CNN_ERR_DECODE,      /* data of a supported format that cannot be decoded */
    CNN_ERR_TOO_LARGE,   /* exceeds a configured limit (pixel cap, size cap) */
} cnn_status;

/* Short stable name, e.g. "CNN_ERR_SHAPE" -> "shape". */
const char *cnn_status_str(cnn_status s);

/* snprintf into err (if err != NULL and err_bytes > 0); always NUL-terminates. Returns s so callers
 * can write `return cnn_err(err, err_bytes, CNN_ERR_SHAPE, "...", ...);`. */
cnn_status cnn_err(char *err, size_t err_bytes, cnn_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
