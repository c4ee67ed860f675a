#include "http_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t http_utf8_repair(char *s)
{
    size_t n_bad = 0;
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        int ok = len != 0;
        for (size_t i = 1; ok && i < len; i++) ok = (p[i] & 0xC0) == 0x80;
        if (ok && len > 1) {
            unsigned cp = len == 2 ? (c & 0x1Fu) << 6 | (p[1] & 0x3Fu)
                        : len == 3 ? (c & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu)
                                   : (c & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
            static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= min_cp[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (!ok) {
            *p++ = '?';
            n_bad++;
            continue;
        }
        p += len;
    }
    return n_bad;
}

static int head_error(http_head *out, int status, const char *code, const char *fmt, const char *arg)
{
    out->status = status;
    out->code = code;
    snprintf(out->message, sizeof out->message, fmt, arg);
    http_utf8_repair(out->message);
    return 1;
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Copies [p, p+n) trimmed of spaces/tabs into a NUL-terminated buffer (truncated to out_bytes). */
static void copy_trimmed(const char *p, size_t n, char *out, size_t out_bytes)
{
    while (n && (*p == ' ' || *p == '\t')) p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (n >= out_bytes) n = out_bytes - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

int http_head_parse(const char *buf, size_t n, http_head *out)
{
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    /* Leading empty lines before the request line are allowed (RFC 9112 2.2). */
    size_t start = 0;
    while (start < n && (buf[start] == '\r' || buf[start] == '\n') && start < 64) start++;
    /* The header block ends at the first empty line (CRLF or bare LF endings). */
    size_t end = 0;
    for (size_t i = start; i < n; i++) {
        if (buf[i] != '\n') continue;
        size_t j = i + 1;
        if (j < n && buf[j] == '\r') j++;
        if (j < n && buf[j] == '\n') {
            end = j + 1;
            break;
        }
    }
    if (!end) {
        /* What can never become a request is refused at once (e.g. a TLS handshake): a NUL byte, or
         * a method with a character a method cannot have. */
        if (memchr(buf, '\0', n)) return head_error(out, 400, "bad_request", "NUL byte in the request %s", "header");
        for (size_t i = start; i < n && buf[i] != ' '; i++)
            if (!is_tchar((unsigned char)buf[i]))
                return head_error(out, 400, "bad_request", "malformed request method%s", "");
        if (n >= HTTP_MAX_HEAD_BYTES)
            return head_error(out, 431, "headers_too_large", "request line and headers exceed %s bytes", "32768");
        /* A request line longer than the URI limit can be refused before it ends. */
        const char *eol = memchr(buf + start, '\n', n - start);
        if (!eol && n - start > HTTP_MAX_URI_BYTES + 64)
            return head_error(out, 414, "uri_too_long", "request target exceeds %s bytes", "8192");
        return 0;
    }
    if (end > HTTP_MAX_HEAD_BYTES)
        return head_error(out, 431, "headers_too_large", "request line and headers exceed %s bytes", "32768");
    out->n_head = end;
    if (memchr(buf, '\0', end)) return head_error(out, 400, "bad_request", "NUL byte in the request %s", "header");

    /* Request line: METHOD SP target SP HTTP/1.x */
    const char *p = buf + start, *stop = buf + end;
    const char *eol = memchr(p, '\n', (size_t)(stop - p));
    size_t line_len = (size_t)(eol - p);
    if (line_len && p[line_len - 1] == '\r') line_len--;
    const char *sp1 = memchr(p, ' ', line_len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - p)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1)
        return head_error(out, 400, "bad_request", "malformed request line (want 'METHOD /path HTTP/1.1')%s", "");
    for (const char *m = p; m < sp1; m++)
        if (!is_tchar((unsigned char)*m)) return head_error(out, 400, "bad_request", "malformed request method%s", "");
    if ((size_t)(sp2 - sp1 - 1) > HTTP_MAX_URI_BYTES)
        return head_error(out, 414, "uri_too_long", "request target exceeds %s bytes", "8192");
    size_t n_version = line_len - (size_t)(sp2 + 1 - p);
    const char *version = sp2 + 1;
    if (n_version == 8 && !memcmp(version, "HTTP/1.1", 8)) out->http11 = 1;
    else if (!(n_version == 8 && !memcmp(version, "HTTP/1.0", 8))) {
        if (n_version >= 5 && !memcmp(version, "HTTP/", 5))
            return head_error(out, 505, "http_version_not_supported", "HTTP version not supported; use HTTP/1.1%s", "");
        return head_error(out, 400, "bad_request", "malformed request line (want 'METHOD /path HTTP/1.1')%s", "");
    }

    int n_host = 0, have_te = 0;
    for (p = eol + 1; p < stop;) {
        eol = memchr(p, '\n', (size_t)(stop - p));
        line_len = (size_t)(eol - p);
        const char *next = eol + 1;
        if (line_len && p[line_len - 1] == '\r') line_len--;
        if (!line_len) break; /* the blank line */
        if (*p == ' ' || *p == '\t')
            return head_error(out, 400, "bad_request", "folded header line (obs-fold) is not accepted%s", "");
        const char *colon = memchr(p, ':', line_len);
        if (!colon) return head_error(out, 400, "bad_request", "header line without ':'%s", "");
        if (colon == p) return head_error(out, 400, "bad_request", "empty header name%s", "");
        for (const char *c = p; c < colon; c++)
            if (!is_tchar((unsigned char)*c))
                return head_error(out, 400, "bad_request", "invalid character in a header name%s", "");
        size_t n_name = (size_t)(colon - p);
        const char *value = colon + 1;
        size_t n_value = line_len - n_name - 1;
        char v[64];
        if (n_name == 14 && !strncasecmp(p, "Content-Length", 14)) {
            copy_trimmed(value, n_value, v, sizeof v);
            size_t nd = strlen(v);
            int digits = nd > 0 && nd <= 18 && strspn(v, "0123456789") == nd;
            if (!digits)
                return head_error(out, 400, "bad_content_length",
                                  "Content-Length '%.40s' is not a decimal byte count (0..10^18)", v);
            int64_t cl = 0;
            for (size_t i = 0; i < nd; i++) cl = cl * 10 + (v[i] - '0');
            if (out->content_length >= 0 && out->content_length != cl)
                return head_error(out, 400, "bad_content_length", "two different Content-Length headers%s", "");
            out->content_length = cl;
        } else if (n_name == 17 && !strncasecmp(p, "Transfer-Encoding", 17)) {
            copy_trimmed(value, n_value, v, sizeof v);
            if (have_te || strcasecmp(v, "chunked"))
                return head_error(out, 501, "unsupported_transfer_encoding",
                                  "Transfer-Encoding '%.40s' is not supported (only 'chunked')", v);
            have_te = 1;
            out->chunked = 1;
        } else if (n_name == 4 && !strncasecmp(p, "Host", 4)) {
            n_host++;
        }
        p = next;
    }
    if (out->chunked && out->content_length >= 0)
        return head_error(out, 400, "bad_request", "both Transfer-Encoding and Content-Length%s", "");
    if (out->chunked && !out->http11)
        return head_error(out, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request%s", "");
    if (out->http11 && n_host != 1)
        return head_error(out, 400, "bad_request", "%s", n_host ? "more than one Host header" : "HTTP/1.1 request without a Host header");
    return 1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes [s, s+n) into out (out_bytes incl. NUL). -1: bad escape, -2: too long, -3: NUL decoded. */
static int query_decode(const char *s, size_t n, char *out, size_t out_bytes)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') c = ' ';
        else if (c == '%') {
            if (n - i < 3) return -1;
            int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h << 4 | l;
            i += 2;
        }
        if (!c) return -3;
        if (k + 1 >= out_bytes) return -2;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return 0;
}

cnn_status http_query_parse(const char *query, size_t n, http_query_param *params, int max_params, int *n_params,
                            char *bad_key, size_t bad_key_bytes, char *err, size_t err_bytes)
{
    *n_params = 0;
    if (bad_key_bytes) bad_key[0] = '\0';
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && query[j] != '&') j++;
        if (j > i) {
            const char *eq = memchr(query + i, '=', j - i);
            size_t n_key = eq ? (size_t)(eq - query - i) : j - i;
            char key[HTTP_QUERY_KEY_BYTES], value[HTTP_QUERY_VALUE_BYTES];
            int rc = query_decode(query + i, n_key, key, sizeof key);
            if (rc) {
                /* Name the key as far as it can be shown. */
                if (bad_key_bytes) {
                    snprintf(bad_key, bad_key_bytes, "%.*s", (int)(n_key < 40 ? n_key : 40), query + i);
                    http_utf8_repair(bad_key);
                }
                return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s",
                               rc == -1   ? "query string: bad %-escape in a parameter name"
                               : rc == -2 ? "query string: parameter name too long"
                                          : "query string: NUL byte in a parameter name");
            }
            if (bad_key_bytes) snprintf(bad_key, bad_key_bytes, "%s", key);
            if (http_utf8_repair(key)) {
                if (bad_key_bytes) snprintf(bad_key, bad_key_bytes, "%s", key);
                return cnn_err(err, err_bytes, CNN_ERR_ARG, "query string: parameter name is not valid UTF-8");
            }
            rc = eq ? query_decode(eq + 1, (size_t)(query + j - eq - 1), value, sizeof value) : 0;
            if (!eq) value[0] = '\0';
            if (rc)
                return cnn_err(err, err_bytes, CNN_ERR_ARG, "parameter '%s': %s", key,
                               rc == -1   ? "bad %-escape in the value"
                               : rc == -2 ? "value too long"
                                          : "NUL byte in the value");
            if (http_utf8_repair(value))
                return cnn_err(err, err_bytes, CNN_ERR_ARG, "parameter '%s': value is not valid UTF-8", key);
            for (int k = 0; k < *n_params; k++)
                if (!strcmp(params[k].key, key))
                    return cnn_err(err, err_bytes, CNN_ERR_ARG, "parameter '%s' given more than once", key);
            if (*n_params >= max_params)
                return cnn_err(err, err_bytes, CNN_ERR_ARG, "query string: more than %d parameters", max_params);
            memcpy(params[*n_params].key, key, sizeof key);
            memcpy(params[*n_params].value, value, sizeof value);
            (*n_params)++;
            if (bad_key_bytes) bad_key[0] = '\0';
        }
        i = j + 1;
    }
    return CNN_OK;
}
