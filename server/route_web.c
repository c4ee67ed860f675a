/* The web page (GET /, /app.js, /app.css: files embedded by web_assets.c) and the reports it links
 * (GET /v1/reports, /reports/{path}: --reports-dir, read-only via reports.c). Every answer carries an
 * ETag (If-None-Match -> 304) and Cache-Control: no-cache, so browsers revalidate and a new binary's
 * page is seen at once; the page's Content-Security-Policy allows only its own script and style. */
#include "routes.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "reports.h"
#include "web_assets.h"

/* No inline script or style anywhere; blob: for the photo preview, data: for the empty favicon. */
static const char page_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/* Report files are data: an SVG figure may style itself but never run script. */
static const char report_csp[] = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox";

/* 1 when If-None-Match lists etag or is "*" (weak comparison: a W/ prefix is ignored). */
static int etag_matches(http_req *r, const char *etag)
{
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (!inm) return 0;
    size_t n = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (*p == '*') return 1;
        if (!strncmp(p, "W/", 2)) p += 2;
        size_t len = strcspn(p, ", \t");
        if (len == n && !strncmp(p, etag, n)) return 1;
        p += len;
    }
    return 0;
}

/* 304 Not Modified: no body, the validator and the caching policy only. */
static enum MHD_Result send_not_modified(http_req *r, const char *etag)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return http_queue_response(r, MHD_HTTP_NOT_MODIFIED, resp, 0, NULL);
}

static enum MHD_Result send_validated(http_req *r, struct MHD_Response *resp, size_t n_bytes, const char *content_type,
                                      const char *etag, const char *csp)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "Content-Security-Policy", csp);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    return http_queue_response(r, MHD_HTTP_OK, resp, n_bytes, content_type);
}

enum MHD_Result web_asset_answer(http_req *r)
{
    web_asset a;
    if (!web_asset_find(r->route->path, &a))
        return http_send_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no page %.100s", r->route->path);
    /* FNV-1a 64 of the content: the ETag changes exactly when the embedded file does. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < a.n_bytes; i++) h = (h ^ (unsigned char)a.data[i]) * 0x100000001b3ull;
    char etag[24];
    snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)h);
    if (etag_matches(r, etag)) return send_not_modified(r, etag);
    struct MHD_Response *resp = MHD_create_response_from_buffer(a.n_bytes, (void *)a.data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    return send_validated(r, resp, a.n_bytes, a.content_type, etag, page_csp);
}

enum MHD_Result reports_list_answer(http_req *r)
{
    json_t *o = reports_list_json(r->srv->cfg->reports_dir);
    if (!o) return MHD_NO;
    return http_send_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result report_file_answer(http_req *r)
{
    const char *rel = r->path_arg ? r->path_arg : "";
    char err[256];
    int fd;
    struct stat st;
    cnn_status s = reports_open(r->srv->cfg->reports_dir, rel, &fd, &st, err, sizeof err);
    if (s != CNN_OK)
        return http_send_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no report '%.200s': %s", rel, err);
    /* Size, modification time and inode: changes whenever the file is rewritten. */
    char etag[64];
    snprintf(etag, sizeof etag, "W/\"%llx-%llx.%lx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec, (unsigned long)st.st_mtim.tv_nsec, (unsigned long long)st.st_ino);
    if (etag_matches(r, etag + 2)) {
        close(fd);
        return send_not_modified(r, etag);
    }
    /* MHD sends from the descriptor (sendfile where it can) and closes it with the response. */
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    return send_validated(r, resp, (size_t)st.st_size, reports_content_type(rel), etag, report_csp);
}
