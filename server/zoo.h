/* The set of models a process serves, as immutable, reference-counted generations.
 *
 * A generation lists one entry per architecture of the registry (loaded from
 * <weights-dir>/<arch>.safetensors, or missing / failed with the reason) followed by one entry per
 * other *.safetensors file of the directory, sorted by name: a fine-tuned model (its __metadata__
 * names a known architecture and has its own `labels`) served under the file's stem
 * (monkeys.safetensors -> "monkeys"), or failed with the reason. zoo_reload rescans the directory
 * into a new generation that shares the loaded models of unchanged files (same device, inode, size
 * and mtime) with the old one; readers hold a reference (zoo_acquire/zoo_release) for as long as
 * they use a generation, so a swap never frees a model under an in-flight request. Only the warm-up
 * counters change after a generation is built. */
#ifndef CNN_ZOO_H
#define CNN_ZOO_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include "../core/status.h"
#include "../models/model.h"
#include "log.h"

/* Entries of one generation (the registry's architectures included): memory permitting, each
 * loaded model costs its weights plus one context per worker. */
#define ZOO_MAX_MODELS 64
#define ZOO_NAME_BYTES 64 /* served names: 1..63 of [A-Za-z0-9._-] */

typedef enum { ZOO_STATE_MISSING = 0, ZOO_STATE_FAILED, ZOO_STATE_LOADED, ZOO_STATE_READY } zoo_state;

typedef struct zoo_model zoo_model; /* a loaded file, shared by the generations that serve it */

typedef struct {
    char name[ZOO_NAME_BYTES]; /* served name: the architecture's canonical name, or the file stem */
    const model_arch *arch;    /* NULL for a file whose architecture is not known */
    int is_arch;               /* the entry of a registry architecture (<arch>.safetensors) */
    model *m;                  /* NULL when missing or failed */
    zoo_model *held;
    int failed;                /* a file exists but cannot be served (why says why) */
    char path[1100];           /* the weights file */
    char why[600];             /* why it is missing or failed */
    int metrics_label;         /* set by the HTTP server when it installs the generation */
    atomic_int n_warm;         /* workers that have run this model's warm-up inference */
} zoo_entry;

typedef struct {
    atomic_int refs;
    unsigned generation;       /* 1 for zoo_load, +1 per zoo_reload */
    char weights_dir[1024];
    char models_csv[1024];     /* "" = every file found */
    int n_entries;
    zoo_entry entries[ZOO_MAX_MODELS];
    int n_loaded;
    int loaded[ZOO_MAX_MODELS];  /* entry indices of the loaded models, entry order */
    int n_warm_needed;           /* an entry is ready once n_warm reaches this (zoo_set_workers) */
    int threads_per_worker;      /* threads of each worker's model contexts (zoo_set_workers) */
    int n_loaded_now, n_kept;    /* zoo_reload: models (re)loaded from their file, kept unchanged */
} zoo;

/* models_csv: comma list of names/aliases/file stems, or "" / "all" for every model file found.
 * Named models must load (CNN_ERR_ARG for an unknown name, the load error otherwise); discovered
 * files that fail are recorded as failed and logged. Fails when no model is loaded. The generation
 * is returned with one reference. */
cnn_status zoo_load(zoo **out, const char *weights_dir, const char *models_csv, const logger *lg, char *err,
                    size_t err_bytes);
/* Rescans prev's directory (same model list) into a new generation: unchanged files keep their loaded
 * model, new and changed ones are loaded, removed ones are dropped; a file that fails is recorded as
 * failed and logged (never an error). CNN_ERR_MISSING (and no generation) when nothing would be
 * loaded. */
cnn_status zoo_reload(zoo **out, const zoo *prev, const logger *lg, char *err, size_t err_bytes);
zoo *zoo_acquire(zoo *z);
/* Drops a reference; the last one frees the generation (and the models no other generation holds). */
void zoo_release(zoo *z);

/* The default model, one rule for serve and classify: ZOO_DEFAULT_MODEL when it is available, else
 * the first available in zoo order (the registry's architectures, then the other model files by
 * name). zoo_default_entry: among z's loaded models (an entry index). zoo_default_name: among the
 * model files of weights_dir, without loading them (classify loads only that one); CNN_ERR_MISSING
 * when there is none. */
#define ZOO_DEFAULT_MODEL "mobilenet_v3_large"
int zoo_default_entry(const zoo *z);
cnn_status zoo_default_name(const char *weights_dir, char *name, size_t name_bytes, char *err, size_t err_bytes);

/* Before serving: n_workers workers, each running its model contexts on threads_per_worker threads.
 * An entry is ready once n_workers warm-ups of it were counted; context sizes count the threads. */
void zoo_set_workers(zoo *z, int n_workers, int threads_per_worker);

/* Entry index for a served name (a fine-tuned file's stem, exact) or an architecture name/alias
 * (case-insensitive), or -1. */
int zoo_find(const zoo *z, const char *name);
/* Slot (index into loaded) of a loaded entry, or -1. */
int zoo_slot(const zoo *z, int entry);
zoo_state zoo_entry_state(const zoo *z, int entry);
const char *zoo_state_name(zoo_state s);
/* 1 when every loaded model is ready. */
int zoo_all_ready(const zoo *z);

/* Comma-separated names of the loaded models, for error messages. */
void zoo_loaded_names(const zoo *z, char *buf, size_t buf_bytes);
json_t *zoo_loaded_names_json(const zoo *z);

/* Bytes of one worker's context of m: its activation arena plus one conv scratch buffer per thread
 * (z->threads_per_worker). */
size_t zoo_ctx_bytes(const zoo *z, const model *m);

/* Description for GET /v1/models: name, state, classes and labels, base/recipe/val_accuracy of a
 * fine-tuned file, sizes, normalization, params/MACs, weights file and its metadata, resident bytes
 * (weights + one context per worker); `why` for a missing or failed entry. */
json_t *zoo_entry_json(const zoo *z, int entry, int n_workers);

#endif
