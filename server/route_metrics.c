/* GET /metrics: Prometheus text exposition (metrics.c renders it). */
#include "routes.h"

enum MHD_Result metrics_answer(http_req *r)
{
    http_server *s = r->srv;
    size_t n = 0;
    char *text = metrics_render(s->mt, r->z, atomic_load(&s->in_flight), workers_depth(s->pool), atomic_load(&s->draining), &n);
    if (!text) return MHD_NO;
    return http_send(r, MHD_HTTP_OK, text, n, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
}
