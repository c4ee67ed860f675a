#include "zoo.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static void entry_init(zoo_entry *e, const model_arch *arch, const char *weights_dir)
{
    memset(e, 0, sizeof *e);
    e->arch = arch;
    snprintf(e->path, sizeof e->path, "%s/%s.safetensors", weights_dir, arch->name);
    atomic_init(&e->n_warm, 0);
}

static void log_loaded(const logger *lg, const zoo_entry *e)
{
    const model *m = e->m;
    log_event(lg, LOG_LEVEL_INFO, "model_loaded",
              json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:i}", "model", e->arch->name, "file", e->path,
                        "weight_bytes", (json_int_t)model_weight_bytes(m), "arena_bytes",
                        (json_int_t)model_arena_bytes(m), "params", (json_int_t)model_n_params(m), "macs",
                        (json_int_t)model_n_macs(m), "num_classes", model_num_classes(m)));
}

/* Loads entry e from its file; on failure records why and returns the status. */
static cnn_status entry_load(zoo_entry *e, const logger *lg, char *err, size_t err_bytes)
{
    struct stat sb;
    if (stat(e->path, &sb) != 0) {
        snprintf(e->why, sizeof e->why, "weights file %s not found", e->path);
        return cnn_err(err, err_bytes, CNN_ERR_IO, "%s", e->why);
    }
    char warn[512] = "";
    cnn_status st = model_load(&e->m, e->arch->name, e->path, err, err_bytes, warn, sizeof warn);
    if (st != CNN_OK) {
        e->m = NULL;
        snprintf(e->why, sizeof e->why, "failed to load %s: %s", e->path, err);
        return st;
    }
    if (warn[0])
        log_event(lg, LOG_LEVEL_WARN, "model_warning", json_pack("{s:s,s:s}", "model", e->arch->name, "msg", warn));
    log_loaded(lg, e);
    return CNN_OK;
}

/* Marks the entries named in csv; CNN_ERR_ARG on an unknown name. */
static cnn_status parse_model_list(zoo *z, const char *csv, int *wanted, char *err, size_t err_bytes)
{
    char buf[1024];
    if (strlen(csv) >= sizeof buf) return cnn_err(err, err_bytes, CNN_ERR_ARG, "model list too long");
    memcpy(buf, csv, strlen(csv) + 1);
    char *save = NULL;
    int n_named = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        size_t n = strlen(tok);
        while (n && tok[n - 1] == ' ') tok[--n] = '\0';
        if (!n) continue;
        int idx = zoo_find(z, tok);
        if (idx < 0) {
            char known[256] = "";
            for (int i = 0; i < z->n_entries; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                         z->entries[i].arch->name);
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "unknown model '%s' (known: %s)", tok, known);
        }
        wanted[idx] = 1;
        n_named++;
    }
    if (!n_named) return cnn_err(err, err_bytes, CNN_ERR_ARG, "empty model list");
    return CNN_OK;
}

cnn_status zoo_load(zoo *z, const char *weights_dir, const char *models_csv, const logger *lg, char *err,
                    size_t err_bytes)
{
    memset(z, 0, sizeof *z);
    int n_archs;
    const model_arch *archs = model_archs(&n_archs);
    if (n_archs > ZOO_MAX_MODELS) n_archs = ZOO_MAX_MODELS;
    z->n_entries = n_archs;
    for (int i = 0; i < n_archs; i++) entry_init(&z->entries[i], &archs[i], weights_dir);

    int discover = !models_csv || !models_csv[0] || !strcasecmp(models_csv, "all");
    int wanted[ZOO_MAX_MODELS] = {0};
    cnn_status st;
    if (!discover && (st = parse_model_list(z, models_csv, wanted, err, err_bytes)) != CNN_OK) return st;

    for (int i = 0; i < n_archs; i++) {
        zoo_entry *e = &z->entries[i];
        if (!discover && !wanted[i]) {
            snprintf(e->why, sizeof e->why, "not in the configured model list");
            log_event(lg, LOG_LEVEL_INFO, "model_skipped", json_pack("{s:s,s:s}", "model", e->arch->name, "why", e->why));
            continue;
        }
        char load_err[512];
        st = entry_load(e, lg, load_err, sizeof load_err);
        if (st == CNN_OK) {
            z->loaded[z->n_loaded++] = i;
            continue;
        }
        if (!discover) {
            zoo_free(z);
            return cnn_err(err, err_bytes, st, "model %s: %s", archs[i].name, load_err);
        }
        log_event(lg, st == CNN_ERR_IO ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "model_skipped",
                  json_pack("{s:s,s:s}", "model", e->arch->name, "why", e->why));
    }
    if (!z->n_loaded)
        return cnn_err(err, err_bytes, CNN_ERR_MISSING,
                       "no model could be loaded from %s (expected files like %s/mobilenet_v3_large.safetensors)",
                       weights_dir, weights_dir);
    return CNN_OK;
}

void zoo_free(zoo *z)
{
    for (int i = 0; i < z->n_entries; i++) {
        model_free(z->entries[i].m);
        z->entries[i].m = NULL;
    }
    z->n_loaded = 0;
}

int zoo_find(const zoo *z, const char *name)
{
    const model_arch *arch = model_arch_find(name);
    if (!arch) return -1;
    for (int i = 0; i < z->n_entries; i++)
        if (z->entries[i].arch == arch) return i;
    return -1;
}

zoo_state zoo_entry_state(const zoo *z, int entry)
{
    const zoo_entry *e = &z->entries[entry];
    if (!e->m) return ZOO_STATE_MISSING;
    return atomic_load(&e->n_warm) >= z->n_warm_needed ? ZOO_STATE_READY : ZOO_STATE_LOADED;
}

const char *zoo_state_name(zoo_state s)
{
    switch (s) {
    case ZOO_STATE_MISSING: return "missing";
    case ZOO_STATE_LOADED: return "loaded";
    case ZOO_STATE_READY: return "ready";
    }
    return "missing";
}

int zoo_all_ready(const zoo *z)
{
    for (int i = 0; i < z->n_loaded; i++)
        if (zoo_entry_state(z, z->loaded[i]) != ZOO_STATE_READY) return 0;
    return 1;
}

void zoo_loaded_names(const zoo *z, char *buf, size_t buf_bytes)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < z->n_loaded && n < buf_bytes; i++)
        n += (size_t)snprintf(buf + n, buf_bytes - n, "%s%s", i ? ", " : "", z->entries[z->loaded[i]].arch->name);
}

json_t *zoo_loaded_names_json(const zoo *z)
{
    json_t *a = json_array();
    for (int i = 0; a && i < z->n_loaded; i++) json_array_append_new(a, json_string(z->entries[z->loaded[i]].arch->name));
    return a;
}

static json_t *floats3_json(const float *v)
{
    return json_pack("[f,f,f]", (double)v[0], (double)v[1], (double)v[2]);
}

static json_t *meta_json(const model *m, const char *key)
{
    const char *v = model_meta(m, key);
    return v ? json_string(v) : json_null();
}

size_t zoo_ctx_bytes(const zoo *z, const model *m) { return model_ctx_bytes(m, z->threads_per_worker); }

json_t *zoo_entry_json(const zoo *z, int entry, int n_workers)
{
    const zoo_entry *e = &z->entries[entry];
    json_t *aliases = json_array();
    for (const char *const *a = e->arch->aliases; aliases && a && *a; a++) json_array_append_new(aliases, json_string(*a));
    json_t *o = json_pack("{s:s,s:o,s:s,s:i,s:i}", "name", e->arch->name, "aliases", aliases, "state",
                          zoo_state_name(zoo_entry_state(z, entry)), "input_size", e->arch->input_size,
                          "resize_size", e->arch->resize_size);
    if (!o) return NULL;
    if (!e->m) {
        json_object_set_new(o, "why", json_string(e->why));
        json_object_set_new(o, "weights_file", json_string(e->path));
        return o;
    }
    const model *m = e->m;
    size_t weight_bytes = model_weight_bytes(m), arena_bytes = zoo_ctx_bytes(z, m);
    json_object_set_new(o, "input_size", json_integer(model_input_size(m)));
    json_object_set_new(o, "resize_size", json_integer(model_resize_size(m)));
    json_object_set_new(o, "mean", floats3_json(model_mean(m)));
    json_object_set_new(o, "std", floats3_json(model_std(m)));
    json_object_set_new(o, "num_classes", json_integer(model_num_classes(m)));
    json_object_set_new(o, "padding", json_string(model_tf_same(m) ? "tf_same" : "pytorch"));
    json_object_set_new(o, "params", json_integer(model_n_params(m)));
    json_object_set_new(o, "macs", json_integer(model_n_macs(m)));
    json_object_set_new(o, "weights_file", json_string(model_path(m)));
    json_object_set_new(o, "metadata", json_pack("{s:o,s:o}", "source", meta_json(m, "source"), "license",
                                                 meta_json(m, "license")));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)(weight_bytes + (size_t)n_workers * arena_bytes)));
    json_object_set_new(o, "weight_bytes", json_integer((json_int_t)weight_bytes));
    json_object_set_new(o, "arena_bytes_per_worker", json_integer((json_int_t)arena_bytes));
    return o;
}
