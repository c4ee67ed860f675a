/* Whole-file reads for the CLIs (classify, train, eval). */
#ifndef CNN_FILEIO_H
#define CNN_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

/* Reads the whole file into a malloc'd buffer (*data, *n_bytes; the caller frees). Errors: CNN_ERR_IO
 * (message names the file and the reason), CNN_ERR_NOMEM. */
cnn_status file_read_all(const char *path, uint8_t **data, size_t *n_bytes, char *err, size_t err_bytes);

#endif
