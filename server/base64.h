/* Strict base64 (RFC 4648 section 4, standard alphabet, '=' padding required) for the BYTES tensors of
 * the Open Inference Protocol's JSON form. */
#ifndef CNN_BASE64_H
#define CNN_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

/* Most bytes n_in characters can decode to. */
size_t base64_decoded_max(size_t n_in);

/* Decodes in[0..n_in) into out (out_bytes >= base64_decoded_max(n_in)); *n_out receives the count.
 * CNN_ERR_ARG with the offending offset in err for: a length that is not a multiple of 4, a
 * character outside the alphabet (whitespace included), misplaced padding, or non-zero bits after
 * the last byte (a non-canonical encoding). */
cnn_status base64_decode(const char *in, size_t n_in, uint8_t *out, size_t out_bytes, size_t *n_out, char *err,
                         size_t err_bytes);

#endif
