#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADER_BLOCK 8192

void multipart_media_type(const char *content_type, char *out, size_t out_bytes)
{
    size_t n = 0;
    if (!out_bytes) return;
    if (content_type) {
        const char *p = content_type;
        while (*p == ' ' || *p == '\t') p++;
        for (; *p && *p != ';' && *p != ' ' && *p != '\t' && n + 1 < out_bytes; p++)
            out[n++] = (char)tolower((unsigned char)*p);
    }
    out[n] = '\0';
}

/* Finds parameter `key` in a header value "type; a=b; key="v"" and copies its (unquoted) value. */
static int header_param(const char *value, const char *key, char *out, size_t out_bytes)
{
    size_t key_len = strlen(key);
    const char *p = strchr(value, ';');
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t') p++;
        if (!strncasecmp(p, key, key_len) && p[key_len] == '=') {
            const char *v = p + key_len + 1;
            size_t n = 0;
            if (*v == '"') {
                for (v++; *v && *v != '"'; v++) {
                    if (*v == '\\' && v[1]) v++;
                    if (n + 1 >= out_bytes) return -1;
                    out[n++] = *v;
                }
                if (*v != '"') return -1;
            } else {
                for (; *v && *v != ';' && *v != ' ' && *v != '\t'; v++) {
                    if (n + 1 >= out_bytes) return -1;
                    out[n++] = *v;
                }
            }
            out[n] = '\0';
            return 1;
        }
        /* Skip to the next ';' outside quotes. */
        int quoted = 0;
        for (; *p && (quoted || *p != ';'); p++) {
            if (*p == '"') quoted = !quoted;
            else if (*p == '\\' && quoted && p[1]) p++;
        }
        p = *p ? p : NULL;
    }
    return 0;
}

cnn_status multipart_boundary(const char *content_type, char *boundary, size_t boundary_bytes, char *err,
                              size_t err_bytes)
{
    char b[128];
    int rc = header_param(content_type, "boundary", b, sizeof b);
    if (rc <= 0)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                       rc < 0 ? "malformed multipart: bad boundary parameter" : "malformed multipart: Content-Type has no boundary");
    size_t n = strlen(b);
    if (n < 1 || n > 70 || n >= boundary_bytes)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: boundary must be 1..70 characters");
    memcpy(boundary, b, n + 1);
    return CNN_OK;
}

/* Parses one part's header block [h, h+n) into part. */
static cnn_status parse_part_headers(const char *h, size_t n, multipart_part *part, int index, char *err,
                                     size_t err_bytes)
{
    int have_disposition = 0;
    while (n) {
        const char *eol = memmem(h, n, "\r\n", 2);
        size_t line_len = eol ? (size_t)(eol - h) : n;
        char line[1024];
        if (line_len >= sizeof line)
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: part %d has a header line over %zu bytes",
                           index, sizeof line - 1);
        memcpy(line, h, line_len);
        line[line_len] = '\0';
        if (memchr(line, '\0', line_len))
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: NUL byte in part %d headers", index);
        char *colon = strchr(line, ':');
        if (!colon) return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: part %d header without ':'", index);
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        if (!strcasecmp(line, "Content-Disposition")) {
            char kind[32];
            multipart_media_type(value, kind, sizeof kind);
            if (strcmp(kind, "form-data"))
                return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                               "malformed multipart: part %d Content-Disposition is not form-data", index);
            if (header_param(value, "name", part->name, sizeof part->name) <= 0)
                return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: part %d has no (valid) name", index);
            char filename[512];
            part->has_filename = header_param(value, "filename", filename, sizeof filename) != 0;
            have_disposition = 1;
        } else if (!strcasecmp(line, "Content-Type")) {
            snprintf(part->content_type, sizeof part->content_type, "%s", value);
        }
        if (!eol) break;
        n -= line_len + 2;
        h = eol + 2;
    }
    if (!have_disposition)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: part %d has no Content-Disposition", index);
    return CNN_OK;
}

cnn_status multipart_parse(const uint8_t *body, size_t n_bytes, const char *boundary, multipart_part *parts,
                           int max_parts, int *n_parts, char *err, size_t err_bytes)
{
    *n_parts = 0;
    /* Before any pointer arithmetic: an empty body may come as NULL. */
    if (!n_bytes) return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: empty body");
    char delim[80];
    int delim_len = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    const char *b = (const char *)body, *end = b + n_bytes;
    /* The first delimiter may start the body (no leading CRLF) or follow a preamble. */
    const char *p;
    if (n_bytes >= (size_t)delim_len - 2 && !memcmp(b, delim + 2, (size_t)delim_len - 2)) {
        p = b + delim_len - 2;
    } else {
        const char *d = memmem(b, n_bytes, delim, (size_t)delim_len);
        if (!d) return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: boundary '%s' not found", boundary);
        p = d + delim_len;
    }
    for (;;) {
        /* p is just past a delimiter: "--" closes, otherwise optional padding then CRLF. */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: boundary line not followed by CRLF");
        p += 2;
        if (*n_parts >= max_parts)
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: more than %d parts", max_parts);
        multipart_part *part = &parts[*n_parts];
        memset(part, 0, sizeof *part);
        const char *data;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            data = p + 2; /* no headers */
        } else {
            size_t window = (size_t)(end - p) < MAX_HEADER_BLOCK ? (size_t)(end - p) : MAX_HEADER_BLOCK;
            const char *hend = memmem(p, window, "\r\n\r\n", 4);
            if (!hend)
                return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: part %d headers not terminated",
                               *n_parts + 1);
            cnn_status st = parse_part_headers(p, (size_t)(hend - p), part, *n_parts + 1, err, err_bytes);
            if (st != CNN_OK) return st;
            data = hend + 4;
        }
        if (!part->name[0])
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: part %d has no Content-Disposition",
                           *n_parts + 1);
        const char *next = memmem(data, (size_t)(end - data), delim, (size_t)delim_len);
        if (!next)
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "malformed multipart: part %d is not closed by a boundary",
                           *n_parts + 1);
        part->data = (const uint8_t *)data;
        part->n_bytes = (size_t)(next - data);
        (*n_parts)++;
        p = next + delim_len;
    }
    return CNN_OK;
}
