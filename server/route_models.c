/* GET /v1/models (every known model, loaded or not) and GET /v1/models/{name}. */
#include "routes.h"

#include "version.h"

enum MHD_Result models_list_answer(http_req *r)
{
    http_server *s = r->srv;
    json_t *list = json_array();
    for (int i = 0; list && i < s->z->n_entries; i++)
        json_array_append_new(list, zoo_entry_json(s->z, i, s->cfg->n_workers));
    return http_send_json(r, MHD_HTTP_OK,
                          json_pack("{s:o,s:s,s:i,s:i,s:s}", "models", list, "default_model",
                                    s->z->entries[s->default_entry].arch->name, "workers", s->cfg->n_workers,
                                    "threads_per_worker", s->cfg->threads_per_worker, "version", CNNSERVE_VERSION));
}

enum MHD_Result model_answer(http_req *r)
{
    http_server *s = r->srv;
    int e = zoo_find(s->z, r->path_arg);
    if (e < 0) return http_send_unknown_model(r, r->path_arg);
    return http_send_json(r, MHD_HTTP_OK, zoo_entry_json(s->z, e, s->cfg->n_workers));
}
