/* The route handlers (one route_*.c file each) named by the table in routes.c. */
#ifndef CNN_ROUTES_H
#define CNN_ROUTES_H

#include "http_internal.h"

/* POST /v1/classify (route_classify.c) */
enum MHD_Result classify_start(http_req *r);
enum MHD_Result classify_answer(http_req *r);
void classify_run(http_req *r, pipeline_ws *ws);
/* n classify jobs for model slot alone, run as one batch (pipeline_classify_batch); each answered. */
void classify_run_batch(http_req **rs, int n, pipeline_ws *ws, int slot);

/* GET /v1/models, /v1/models/{name} (route_models.c) */
enum MHD_Result models_list_answer(http_req *r);
enum MHD_Result model_answer(http_req *r);
enum MHD_Result models_reload_answer(http_req *r);
void models_reload_run(http_req *r, pipeline_ws *ws);

/* GET /healthz, /readyz (route_health.c) */
enum MHD_Result healthz_answer(http_req *r);
enum MHD_Result readyz_answer(http_req *r);

/* GET /metrics (route_metrics.c) */
enum MHD_Result metrics_answer(http_req *r);

/* GET /openapi.yaml (route_openapi.c) */
enum MHD_Result openapi_answer(http_req *r);

/* GET /, /app.js, /app.css (the web page), /v1/reports, /reports/{path*} (route_web.c) */
enum MHD_Result web_asset_answer(http_req *r);
enum MHD_Result reports_list_answer(http_req *r);
enum MHD_Result report_file_answer(http_req *r);

/* Open Inference Protocol (KServe v2) routes under /v2 (route_kserve.c) */
enum MHD_Result kserve_get_answer(http_req *r);
enum MHD_Result kserve_infer_start(http_req *r);
enum MHD_Result kserve_infer_answer(http_req *r);
void kserve_infer_run(http_req *r, pipeline_ws *ws);

#endif
