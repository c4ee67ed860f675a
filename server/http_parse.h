/* Request-layer parsing that needs no libmicrohttpd (and so can be fuzzed alone, tests/fuzz/):
 * the header block check of new connections (framing, limits), query strings, UTF-8 repair. */
#ifndef CNN_HTTP_PARSE_H
#define CNN_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

#define HTTP_MAX_URI_BYTES 8192     /* request target; longer -> 414 */
#define HTTP_MAX_HEAD_BYTES 32768   /* request line + headers; more -> 431 */

typedef struct {
    int status;              /* 0: acceptable; else the HTTP status to answer (400, 414, 431, 501, 505) */
    const char *code;        /* error code for the JSON answer */
    char message[200];
    size_t n_head;           /* bytes up to and including the blank line */
    int64_t content_length;  /* -1 when absent */
    int chunked;
    int http11;              /* HTTP/1.1 (else 1.0) */
} http_head;

/* Looks at the start of a connection's data (buf, n bytes: what has arrived so far). Returns 0 while
 * the header block is incomplete (and not yet over HTTP_MAX_HEAD_BYTES), 1 once decided: then
 * out->status is 0 (well-formed) or the error to answer. Checks: request line "METHOD target
 * HTTP/1.x", header lines "name: value" (token names, no NUL/obs-fold), Content-Length digits only
 * with no differing duplicates, Transfer-Encoding exactly "chunked" (anything else 501), not both,
 * Host present (once) in HTTP/1.1, the URI and header size limits. */
int http_head_parse(const char *buf, size_t n, http_head *out);

/* Replaces every byte that is not part of valid UTF-8 (overlong, surrogate, truncated sequences
 * included) by '?', in place. Returns how many bytes were replaced. */
size_t http_utf8_repair(char *s);

#define HTTP_QUERY_MAX_PARAMS 8
#define HTTP_QUERY_KEY_BYTES 32
#define HTTP_QUERY_VALUE_BYTES 96

typedef struct {
    char key[HTTP_QUERY_KEY_BYTES];
    char value[HTTP_QUERY_VALUE_BYTES];
} http_query_param;

/* Parses a raw query string (after '?', n bytes, not NUL-terminated): '&'-separated key=value pairs,
 * %XX and '+' decoded. CNN_ERR_ARG with a message for: bad %-escapes, NUL or invalid UTF-8 after
 * decoding, a key or value over the size limits, more than max_params, a key given twice.
 * *bad_key gets the offending key (repaired UTF-8, may be "") when the error concerns one. */
cnn_status http_query_parse(const char *query, size_t n, http_query_param *params, int max_params, int *n_params,
                            char *bad_key, size_t bad_key_bytes, char *err, size_t err_bytes);

#endif
