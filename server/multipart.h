/* Content-Type parsing and a strict multipart/form-data parser (RFC 7578) over a fully buffered body.
 * Parts point into the body; nothing is copied. Malformed input is CNN_ERR_FORMAT with a message. */
#ifndef CNN_MULTIPART_H
#define CNN_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

#define MULTIPART_MAX_PARTS 16

typedef struct {
    char name[64];          /* form field name */
    int has_filename;       /* a file field (filename= present) */
    char content_type[128]; /* "" when absent */
    const uint8_t *data;
    size_t n_bytes;
} multipart_part;

/* "Image/JPEG; charset=x" -> "image/jpeg" (lower case, parameters dropped); "" for NULL. */
void multipart_media_type(const char *content_type, char *out, size_t out_bytes);

/* The boundary parameter of a multipart/form-data Content-Type (quotes removed, 1..70 chars). */
cnn_status multipart_boundary(const char *content_type, char *boundary, size_t boundary_bytes, char *err,
                              size_t err_bytes);

cnn_status multipart_parse(const uint8_t *body, size_t n_bytes, const char *boundary, multipart_part *parts,
                           int max_parts, int *n_parts, char *err, size_t err_bytes);

#endif
