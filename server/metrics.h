/* Prometheus metrics: request counters by route/model/status, per-stage latency histograms by model,
 * request-body size histogram; gauges (in flight, queue depth, model state, build info) are read at
 * render time. Counters are atomics: any thread may record. */
#ifndef CNN_METRICS_H
#define CNN_METRICS_H

#include <stddef.h>

#include "../core/status.h"
#include "zoo.h"

typedef enum {
    METRICS_STAGE_RECEIVE = 0,
    METRICS_STAGE_DECODE,
    METRICS_STAGE_PREPROCESS,
    METRICS_STAGE_QUEUE,
    METRICS_STAGE_INFERENCE,
    METRICS_STAGE_POSTPROCESS,
    METRICS_STAGE_TOTAL,
    METRICS_N_STAGES
} metrics_stage;

/* Model label of a series: a zoo entry index, or one of these. */
#define METRICS_MODEL_ALL ZOO_MAX_MODELS        /* model=all */
#define METRICS_MODEL_NONE (ZOO_MAX_MODELS + 1) /* no model (other routes, early errors) */

typedef struct metrics metrics;

/* route_names[0..n_routes): the route labels (kept, not copied); route index n_routes = "unknown". */
cnn_status metrics_init(metrics **out, const zoo *z, int n_workers, int queue_capacity,
                        const char *const *route_names, int n_routes);
void metrics_free(metrics *mt);

void metrics_count_request(metrics *mt, int route, int model_label, int status);
void metrics_count_aborted(metrics *mt);
void metrics_observe_stage(metrics *mt, metrics_stage stage, int model_label, double ms);
void metrics_observe_body(metrics *mt, size_t n_bytes);

/* Text exposition format 0.0.4; malloc'd, *n_bytes set. NULL when out of memory. */
char *metrics_render(metrics *mt, int in_flight, int queue_depth, int draining, size_t *n_bytes);

#endif
