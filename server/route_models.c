/* GET /v1/models (every known model: loaded, missing or failed), GET /v1/models/{name} and
 * POST /v1/models/reload (rescan the weights directory; only with --admin-reload 1). */
#include "routes.h"

#include "version.h"

enum MHD_Result models_list_answer(http_req *r)
{
    http_server *s = r->srv;
    const zoo *z = r->z;
    json_t *list = json_array();
    for (int i = 0; list && i < z->n_entries; i++) json_array_append_new(list, zoo_entry_json(z, i, s->cfg->n_workers));
    return http_send_json(r, MHD_HTTP_OK,
                          json_pack("{s:o,s:s,s:i,s:i,s:I,s:s,s:s}", "models", list, "default_model",
                                    z->entries[http_default_entry(s, z)].name, "workers", s->cfg->n_workers,
                                    "threads_per_worker", s->cfg->threads_per_worker, "generation",
                                    (json_int_t)z->generation, "weights_dir", z->weights_dir, "version",
                                    CNNSERVE_VERSION));
}

enum MHD_Result model_answer(http_req *r)
{
    http_server *s = r->srv;
    int e = zoo_find(r->z, r->path_arg);
    if (e < 0) return http_send_unknown_model(r, r->path_arg);
    return http_send_json(r, MHD_HTTP_OK, zoo_entry_json(r->z, e, s->cfg->n_workers));
}

enum MHD_Result models_reload_answer(http_req *r)
{
    if (!r->srv->cfg->admin_reload)
        return http_send_error(r, MHD_HTTP_FORBIDDEN, "forbidden",
                               "reloading over HTTP is disabled; start the server with --admin-reload 1 "
                               "(CNNSERVE_ADMIN_RELOAD=1), or send it SIGHUP");
    return http_submit_job(r); /* loading files takes a while: on a worker, not the event loop */
}

void models_reload_run(http_req *r, pipeline_ws *ws)
{
    (void)ws;
    json_t *summary = NULL;
    char err[1024];
    cnn_status st = http_server_reload(r->srv, &summary, err, sizeof err);
    if (st != CNN_OK) {
        http_job_error(r, st == CNN_ERR_NOMEM ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_CONFLICT,
                       st == CNN_ERR_NOMEM ? "busy" : "reload_failed", err);
        return;
    }
    json_t *o = json_pack("{s:s,s:o}", "request_id", r->request_id, "reload", summary);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body) {
        http_job_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory building the answer");
        return;
    }
    http_job_finish(r, MHD_HTTP_OK, NULL, body);
}
