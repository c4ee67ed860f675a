/* Every route of the service, in one table: the router, the 404 message, the Allow headers and the
 * metrics route labels all read it. Add a route here and put its handler in its own route_*.c. */
#include "routes.h"

const http_route http_routes[] = {
    /* path                 alias        allow        start           answer               run */
    {"/v1/classify",        "/classify", "POST",      classify_start, classify_answer,     classify_run},
    {"/v1/models",          NULL,        "GET, HEAD", NULL,           models_list_answer,  NULL},
    {"/v1/models/reload",   NULL,        "POST",      NULL,           models_reload_answer, models_reload_run},
    {"/v1/models/{name}",   NULL,        "GET, HEAD", NULL,           model_answer,        NULL},
    {"/healthz",            NULL,        "GET, HEAD", NULL,           healthz_answer,      NULL},
    {"/readyz",             NULL,        "GET, HEAD", NULL,           readyz_answer,       NULL},
    {"/metrics",            NULL,        "GET, HEAD", NULL,           metrics_answer,      NULL},
    {"/openapi.yaml",       NULL,        "GET, HEAD", NULL,           openapi_answer,      NULL},
    {"/",                   "/index.html", "GET, HEAD", NULL,         web_asset_answer,    NULL},
    {"/app.js",             NULL,        "GET, HEAD", NULL,           web_asset_answer,    NULL},
    {"/app.css",            NULL,        "GET, HEAD", NULL,           web_asset_answer,    NULL},
    {"/v1/reports",         NULL,        "GET, HEAD", NULL,           reports_list_answer, NULL},
    {"/reports/{path*}",    NULL,        "GET, HEAD", NULL,           report_file_answer,  NULL},
    /* Open Inference Protocol (KServe v2): every route under /v2 answers errors as {"error": message} */
    {"/v2/health/live",     NULL,        "GET, HEAD", NULL,           kserve_get_answer,   NULL},
    {"/v2/health/ready",    NULL,        "GET, HEAD", NULL,           kserve_get_answer,   NULL},
    {"/v2",                 "/v2/",      "GET, HEAD", NULL,           kserve_get_answer,   NULL},
    {"/v2/models/{name}",   NULL,        "GET, HEAD", NULL,           kserve_get_answer,   NULL},
    {"/v2/models/{name}/versions/{version}", NULL, "GET, HEAD", NULL, kserve_get_answer,   NULL},
    {"/v2/models/{name}/ready", NULL,    "GET, HEAD", NULL,           kserve_get_answer,   NULL},
    {"/v2/models/{name}/versions/{version}/ready", NULL, "GET, HEAD", NULL, kserve_get_answer, NULL},
    {"/v2/models/{name}/infer", NULL,    "POST", kserve_infer_start,  kserve_infer_answer, kserve_infer_run},
    {"/v2/models/{name}/versions/{version}/infer", NULL, "POST", kserve_infer_start, kserve_infer_answer,
     kserve_infer_run},
};
const int http_n_routes = (int)(sizeof http_routes / sizeof http_routes[0]);
