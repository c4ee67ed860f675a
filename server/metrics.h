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

/* Model label of a series: an index from metrics_model_label (model names stay labelled for the
 * process lifetime, so series survive reloads that drop or re-add a model), or one of these. */
#define METRICS_MAX_MODEL_NAMES 256
#define METRICS_MODEL_ALL METRICS_MAX_MODEL_NAMES        /* model=all */
#define METRICS_MODEL_NONE (METRICS_MAX_MODEL_NAMES + 1) /* no model (other routes, early errors; names beyond the max) */

typedef struct metrics metrics;

/* route_names[0..n_routes): the route labels (kept, not copied); route index n_routes = "unknown". */
cnn_status metrics_init(metrics **out, int n_workers, int queue_capacity, const char *const *route_names,
                        int n_routes);
void metrics_free(metrics *mt);

/* The label of a model name (registered on first use; thread-safe). */
int metrics_model_label(metrics *mt, const char *name);

/* The name of a label ("all", "" for none). */
const char *metrics_model_name(metrics *mt, int model_label);

void metrics_count_request(metrics *mt, int route, int model_label, int status);
void metrics_count_aborted(metrics *mt);
void metrics_observe_stage(metrics *mt, metrics_stage stage, int model_label, double ms);
void metrics_observe_body(metrics *mt, size_t n_bytes);

/* Text exposition format 0.0.4; model state gauges of generation z; malloc'd, *n_bytes set. NULL when
 * out of memory. */
char *metrics_render(metrics *mt, const zoo *z, int in_flight, int queue_depth, int draining, size_t *n_bytes);

#endif
