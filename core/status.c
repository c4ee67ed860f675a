#include "status.h"

#include <stdarg.h>
#include <stdio.h>

const char *cnn_status_str(cnn_status s)
{
    switch (s) {
    case CNN_OK: return "ok";
    case CNN_ERR_NOMEM: return "out_of_memory";
    case CNN_ERR_IO: return "io";
    case CNN_ERR_FORMAT: return "format";
    case CNN_ERR_SHAPE: return "shape";
    case CNN_ERR_DTYPE: return "dtype";
    case CNN_ERR_MISSING: return "missing";
    case CNN_ERR_ARG: return "argument";
    case CNN_ERR_UNSUPPORTED: return "unsupported";
    case CNN_ERR_DECODE: return "decode";
    case CNN_ERR_TOO_LARGE: return "too_large";
    }
    return "unknown";
}

cnn_status cnn_err(char *err, size_t err_bytes, cnn_status s, const char *fmt, ...)
{
    if (err && err_bytes > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_bytes, fmt, ap);
        va_end(ap);
    }
    return s;
}
