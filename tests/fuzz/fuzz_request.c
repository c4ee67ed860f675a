/* libFuzzer target: the request layer without libmicrohttpd, as the server runs it. The first byte
 * picks the parser: the connection gate's header-block check (http_head_parse), the query string
 * parser (http_query_parse), the multipart parser with a boundary taken from the input's first line
 * (multipart_boundary + multipart_parse), or the UTF-8 repair. Invariants are checked; any crash or
 * sanitizer report is a bug, errors are fine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/http_parse.h"
#include "../../server/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts when s is not valid UTF-8 (what http_utf8_repair promises for its output). */
static void check_utf8(const char *s)
{
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", s);
    if (http_utf8_repair(copy)) abort();
}

static void fuzz_head(const char *p, size_t n)
{
    http_head h;
    int done = http_head_parse(p, n, &h);
    if (done != 0 && done != 1) abort();
    if (!done) {
        if (n >= HTTP_MAX_HEAD_BYTES) abort(); /* an over-long block must be decided */
        return;
    }
    if (h.status) {
        if (!h.code || !h.message[0] || h.status < 400 || h.status > 505) abort();
        check_utf8(h.message);
    } else if (h.n_head == 0 || h.n_head > n || h.content_length < -1 || (h.chunked && h.content_length >= 0)) {
        abort();
    }
}

static void fuzz_query(const char *p, size_t n)
{
    http_query_param params[HTTP_QUERY_MAX_PARAMS];
    int n_params = -1;
    char bad[48], err[200];
    if (http_query_parse(p, n, params, HTTP_QUERY_MAX_PARAMS, &n_params, bad, sizeof bad, err, sizeof err) != CNN_OK) {
        check_utf8(err);
        check_utf8(bad);
        return;
    }
    if (n_params < 0 || n_params > HTTP_QUERY_MAX_PARAMS) abort();
    for (int i = 0; i < n_params; i++) {
        check_utf8(params[i].key);
        check_utf8(params[i].value);
        for (int j = 0; j < i; j++)
            if (!strcmp(params[i].key, params[j].key)) abort(); /* duplicates are refused */
    }
}

static void fuzz_multipart(const char *p, size_t n)
{
    const char *eol = memchr(p, '\n', n);
    size_t n_ctype = eol ? (size_t)(eol - p) : n;
    char ctype[256];
    snprintf(ctype, sizeof ctype, "multipart/form-data; %.*s", (int)(n_ctype < 200 ? n_ctype : 200), p);
    char boundary[80], err[200];
    if (multipart_boundary(ctype, boundary, sizeof boundary, err, sizeof err) != CNN_OK) return;
    const uint8_t *body = eol ? (const uint8_t *)eol + 1 : NULL;
    size_t n_body = eol ? n - n_ctype - 1 : 0;
    multipart_part parts[MULTIPART_MAX_PARTS];
    int n_parts = -1;
    if (multipart_parse(body, n_body, boundary, parts, MULTIPART_MAX_PARTS, &n_parts, err, sizeof err) != CNN_OK) return;
    if (n_parts < 0 || n_parts > MULTIPART_MAX_PARTS) abort();
    for (int i = 0; i < n_parts; i++)
        if (parts[i].data < body || parts[i].data + parts[i].n_bytes > body + n_body || !parts[i].name[0]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    /* An exact-size heap copy, so reading past the input is caught. */
    size_t n = size - 1;
    char *p = malloc(n ? n : 1);
    if (!p) return 0;
    memcpy(p, data + 1, n);
    switch (data[0] % 4) {
    case 0: fuzz_head(p, n); break;
    case 1: fuzz_query(p, n); break;
    case 2: fuzz_multipart(p, n); break;
    default: {
        char *s = malloc(n + 1);
        if (s) {
            memcpy(s, p, n);
            s[n] = '\0';
            http_utf8_repair(s);
            if (http_utf8_repair(s)) abort(); /* repaired text stays valid */
            free(s);
        }
    }
    }
    free(p);
    return 0;
}
