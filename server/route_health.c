/* GET /healthz (liveness: the event loop answers) and GET /readyz (every model warmed up, not draining). */
#include "routes.h"

enum MHD_Result healthz_answer(http_req *r)
{
    return http_send_json(r, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

static json_t *model_states_json(const zoo *z)
{
    json_t *o = json_object();
    for (int i = 0; o && i < z->n_loaded; i++)
        json_object_set_new(o, z->entries[z->loaded[i]].name,
                            json_string(zoo_state_name(zoo_entry_state(z, z->loaded[i]))));
    return o;
}

enum MHD_Result readyz_answer(http_req *r)
{
    http_server *s = r->srv;
    /* After a reload the new models warm up while the server keeps answering: stay ready. */
    int draining = atomic_load(&s->draining), ready = atomic_load(&s->ever_ready) || zoo_all_ready(r->z);
    if (ready) atomic_store(&s->ever_ready, 1);
    const char *status = draining ? "draining" : ready ? "ready" : "warming_up";
    return http_send_json(r, !draining && ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                          json_pack("{s:s,s:o}", "status", status, "models", model_states_json(r->z)));
}
