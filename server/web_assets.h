/* The web page's files (server/web/), embedded in the binary at build time like openapi.yaml. */
#ifndef CNN_WEB_ASSETS_H
#define CNN_WEB_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path;         /* URL path: "/", "/app.js", "/app.css" (routes.c maps /index.html to "/") */
    const char *content_type;
    const char *data;
    size_t n_bytes;
} web_asset;

/* The asset served at url_path; 0 when there is none. */
int web_asset_find(const char *url_path, web_asset *out);

#endif
