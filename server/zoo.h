/* The set of models a process serves: one entry per architecture of the registry, each either
 * loaded from <weights-dir>/<name>.safetensors or missing with the reason. Loaded models are
 * immutable and shared read-only; only the warm-up counters change after zoo_load. */
#ifndef CNN_ZOO_H
#define CNN_ZOO_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include "../core/status.h"
#include "../models/model.h"
#include "log.h"

#define ZOO_MAX_MODELS 8

typedef enum { ZOO_STATE_MISSING = 0, ZOO_STATE_LOADED, ZOO_STATE_READY } zoo_state;

typedef struct {
    const model_arch *arch;
    model *m;            /* NULL when missing */
    char path[1100];     /* the weights file looked for */
    char why[600];       /* why it is missing */
    atomic_int n_warm;   /* workers that have run this model's warm-up inference */
} zoo_entry;

typedef struct {
    int n_entries;
    zoo_entry entries[ZOO_MAX_MODELS]; /* every architecture, registry (paper) order */
    int n_loaded;
    int loaded[ZOO_MAX_MODELS];        /* entry indices of the loaded models, registry order */
    int n_warm_needed;                 /* an entry is ready once n_warm reaches this */
    int threads_per_worker;            /* threads of each worker's model contexts (set with n_warm_needed) */
} zoo;

/* models_csv: comma list of names/aliases, or "" / "all" for every model whose file exists.
 * Named models must load (CNN_ERR_ARG / the load error otherwise); discovered files that fail to load
 * are skipped and logged. Fails when no model is loaded. Logs each model loaded or skipped. */
cnn_status zoo_load(zoo *z, const char *weights_dir, const char *models_csv, const logger *lg, char *err,
                    size_t err_bytes);
void zoo_free(zoo *z);

/* Entry index for a name or alias, or -1 when the name is unknown. */
int zoo_find(const zoo *z, const char *name);
zoo_state zoo_entry_state(const zoo *z, int entry);
const char *zoo_state_name(zoo_state s);
/* 1 when every loaded model is ready. */
int zoo_all_ready(const zoo *z);

/* Comma-separated canonical names of the loaded models, for error messages. */
void zoo_loaded_names(const zoo *z, char *buf, size_t buf_bytes);
json_t *zoo_loaded_names_json(const zoo *z);

/* Bytes of one worker's context of m: its activation arena plus one conv scratch buffer per thread
 * (z->threads_per_worker). */
size_t zoo_ctx_bytes(const zoo *z, const model *m);

/* Description for GET /v1/models: name, aliases, state, sizes, normalization, params/MACs,
 * weights file and its metadata, resident bytes (weights + one context per worker). */
json_t *zoo_entry_json(const zoo *z, int entry, int n_workers);

#endif
