#include "zoo.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../core/weights.h"

struct zoo_model {
    model *m;
    atomic_int refs;
    dev_t dev; /* identity of the file when it was loaded: a change of any field reloads it */
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static void zoo_model_release(zoo_model *zm)
{
    if (zm && atomic_fetch_sub(&zm->refs, 1) == 1) {
        model_free(zm->m);
        free(zm);
    }
}

static int same_file(const zoo_model *zm, const struct stat *sb)
{
    return zm->dev == sb->st_dev && zm->ino == sb->st_ino && zm->size == sb->st_size &&
           zm->mtime.tv_sec == sb->st_mtim.tv_sec && zm->mtime.tv_nsec == sb->st_mtim.tv_nsec;
}

static void log_loaded(const logger *lg, const zoo_entry *e, int reloaded)
{
    const model *m = e->m;
    log_event(lg, LOG_LEVEL_INFO, reloaded ? "model_reloaded" : "model_loaded",
              json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:i}", "model", e->name, "file", e->path, "weight_bytes",
                        (json_int_t)model_weight_bytes(m), "arena_bytes", (json_int_t)model_arena_bytes(m), "params",
                        (json_int_t)model_n_params(m), "macs", (json_int_t)model_n_macs(m), "num_classes",
                        model_num_labels(m)));
}

/* The architecture a fine-tuned file names in its __metadata__; NULL with why set otherwise. */
static const model_arch *file_arch(zoo_entry *e)
{
    weights *w = NULL;
    char err[512];
    if (weights_open(&w, e->path, err, sizeof err) != CNN_OK) {
        snprintf(e->why, sizeof e->why, "%s", err);
        return NULL;
    }
    const char *a = weights_meta(w, "architecture");
    const model_arch *arch = a ? model_arch_find(a) : NULL;
    if (!a)
        snprintf(e->why, sizeof e->why,
                 "%s: no __metadata__ architecture (an ImageNet model must be named <architecture>.safetensors)",
                 e->path);
    else if (!arch)
        snprintf(e->why, sizeof e->why, "%s: unknown __metadata__ architecture '%.60s'", e->path, a);
    weights_free(w);
    return arch;
}

/* Loads entry e from its file, or keeps prev's model when the file is unchanged. On failure records
 * why (e->failed for a file that exists) and returns the status. */
static cnn_status entry_load(zoo *z, zoo_entry *e, const zoo_entry *prev, const logger *lg)
{
    struct stat sb;
    if (stat(e->path, &sb) != 0) {
        snprintf(e->why, sizeof e->why, "weights file %s not found", e->path);
        return CNN_ERR_IO;
    }
    if (prev && prev->held && same_file(prev->held, &sb)) {
        atomic_fetch_add(&prev->held->refs, 1);
        e->held = prev->held;
        e->m = prev->held->m;
        e->arch = prev->arch;
        z->n_kept++;
        return CNN_OK;
    }
    e->failed = 1;
    if (!e->arch && !(e->arch = file_arch(e))) return CNN_ERR_FORMAT;
    zoo_model *zm = calloc(1, sizeof *zm);
    if (!zm) {
        snprintf(e->why, sizeof e->why, "out of memory");
        return CNN_ERR_NOMEM;
    }
    char err[512], warn[512] = "";
    cnn_status st = model_load(&zm->m, e->arch->name, e->path, err, sizeof err, warn, sizeof warn);
    if (st == CNN_OK && !e->is_arch && !model_has_own_labels(zm->m)) {
        st = CNN_ERR_FORMAT;
        snprintf(err, sizeof err,
                 "%s: no __metadata__ labels list: only a model with its own classes is served under its file "
                 "name (an ImageNet model must be named %s.safetensors)",
                 e->path, e->arch->name);
    }
    if (st != CNN_OK) {
        model_free(zm->m);
        free(zm);
        snprintf(e->why, sizeof e->why, "failed to load: %s", err);
        return st;
    }
    atomic_init(&zm->refs, 1);
    zm->dev = sb.st_dev;
    zm->ino = sb.st_ino;
    zm->size = sb.st_size;
    zm->mtime = sb.st_mtim;
    e->held = zm;
    e->m = zm->m;
    e->failed = 0;
    z->n_loaded_now++;
    if (warn[0]) log_event(lg, LOG_LEVEL_WARN, "model_warning", json_pack("{s:s,s:s}", "model", e->name, "msg", warn));
    log_loaded(lg, e, prev && prev->held);
    return CNN_OK;
}

/* A file stem that can be served: 1..63 of [A-Za-z0-9._-], not an architecture name or alias, not a
 * word of the API ("all", "reload"). 0 with why otherwise. */
static int stem_ok(const char *stem, char *why, size_t why_bytes)
{
    size_t n = strlen(stem);
    if (!n || n >= ZOO_NAME_BYTES || strspn(stem, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n) {
        snprintf(why, why_bytes, "file name '%.80s' cannot be a model name (1..%d letters, digits, '.', '_', '-')", stem,
                 ZOO_NAME_BYTES - 1);
        return 0;
    }
    const model_arch *a = model_arch_find(stem);
    if (a) {
        snprintf(why, why_bytes, "file name '%s' is an alias of %s; rename the file", stem, a->name);
        return 0;
    }
    if (!strcasecmp(stem, "all") || !strcasecmp(stem, "reload")) {
        snprintf(why, why_bytes, "'%s' is reserved by the API; rename the file", stem);
        return 0;
    }
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Stems of the directory's *.safetensors files other than <arch>.safetensors, sorted (malloc'd
 * strings in *out, count returned; -1 when the directory cannot be read). */
static int scan_dir(const char *dir, char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    int n = 0, cap = 0;
    static const char ext[] = ".safetensors";
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= sizeof ext - 1 || strcmp(de->d_name + len - (sizeof ext - 1), ext)) continue;
        char *stem = strndup(de->d_name, len - (sizeof ext - 1));
        if (!stem) break;
        const model_arch *a = model_arch_find(stem);
        if (a && !strcmp(a->name, stem)) { /* the architecture's own entry */
            free(stem);
            continue;
        }
        if (n == cap) {
            char **grown = realloc(names, (size_t)(cap ? 2 * cap : 16) * sizeof *names);
            if (!grown) {
                free(stem);
                break;
            }
            names = grown;
            cap = cap ? 2 * cap : 16;
        }
        names[n++] = stem;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

/* 1 when name (a token of the model list) names entry e. */
static int names_entry(const char *name, const zoo_entry *e)
{
    if (e->is_arch) return model_arch_find(name) == e->arch;
    return !strcmp(name, e->name);
}

/* Splits csv into trimmed tokens in buf; returns their count (at most max). */
static int split_csv(const char *csv, char *buf, size_t buf_bytes, char **tok, int max)
{
    snprintf(buf, buf_bytes, "%s", csv);
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        size_t len = strlen(t);
        while (len && t[len - 1] == ' ') t[--len] = '\0';
        if (len) tok[n++] = t;
    }
    return n;
}

static const zoo_entry *prev_entry(const zoo *prev, const char *name)
{
    for (int i = 0; prev && i < prev->n_entries; i++)
        if (!strcmp(prev->entries[i].name, name)) return &prev->entries[i];
    return NULL;
}

/* Builds generation z (dir and csv set) from the directory. strict: an unknown or failing named model
 * is an error (startup); otherwise failures are recorded. */
static cnn_status zoo_build(zoo *z, const zoo *prev, int strict, const logger *lg, char *err, size_t err_bytes)
{
    char list_buf[1024], *tok[ZOO_MAX_MODELS];
    int discover = !z->models_csv[0] || !strcasecmp(z->models_csv, "all");
    int n_tok = discover ? 0 : split_csv(z->models_csv, list_buf, sizeof list_buf, tok, ZOO_MAX_MODELS);
    if (!discover && !n_tok) return cnn_err(err, err_bytes, CNN_ERR_ARG, "empty model list");

    int n_archs;
    const model_arch *archs = model_archs(&n_archs);
    for (int i = 0; i < n_archs; i++) {
        zoo_entry *e = &z->entries[z->n_entries++];
        snprintf(e->name, sizeof e->name, "%s", archs[i].name);
        e->arch = &archs[i];
        e->is_arch = 1;
        snprintf(e->path, sizeof e->path, "%s/%s.safetensors", z->weights_dir, archs[i].name);
    }
    char **stems = NULL;
    int n_stems = scan_dir(z->weights_dir, &stems);
    if (n_stems < 0 && strict)
        log_event(lg, LOG_LEVEL_WARN, "weights_dir_unreadable",
                  json_pack("{s:s,s:s}", "dir", z->weights_dir, "msg", strerror(errno)));
    for (int i = 0; i < n_stems; i++) {
        int wanted = discover;
        for (int t = 0; t < n_tok && !wanted; t++) wanted = !strcmp(tok[t], stems[i]);
        if (!wanted) continue;
        if (z->n_entries == ZOO_MAX_MODELS) {
            log_event(lg, LOG_LEVEL_WARN, "model_skipped",
                      json_pack("{s:s,s:s}", "model", stems[i], "why", "more than ZOO_MAX_MODELS (64) model files"));
            continue;
        }
        zoo_entry *e = &z->entries[z->n_entries++];
        snprintf(e->name, sizeof e->name, "%.63s", stems[i]);
        snprintf(e->path, sizeof e->path, "%s/%s.safetensors", z->weights_dir, stems[i]);
        if (!stem_ok(stems[i], e->why, sizeof e->why)) e->failed = 1;
    }
    for (int i = 0; i < n_stems; i++) free(stems[i]);
    free(stems);

    for (int t = 0; t < n_tok; t++) {
        int found = 0;
        for (int i = 0; i < z->n_entries && !found; i++) found = names_entry(tok[t], &z->entries[i]);
        if (!found && strict) {
            char known[1024] = "";
            for (int i = 0; i < z->n_entries; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", z->entries[i].name);
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "unknown model '%s' (known: %s)", tok[t], known);
        }
    }

    for (int i = 0; i < z->n_entries; i++) {
        zoo_entry *e = &z->entries[i];
        atomic_init(&e->n_warm, 0);
        int wanted = discover;
        for (int t = 0; t < n_tok && !wanted; t++) wanted = names_entry(tok[t], e);
        if (!wanted) {
            snprintf(e->why, sizeof e->why, "not in the configured model list");
            if (strict)
                log_event(lg, LOG_LEVEL_INFO, "model_skipped", json_pack("{s:s,s:s}", "model", e->name, "why", e->why));
            continue;
        }
        cnn_status st = e->failed ? CNN_ERR_FORMAT : entry_load(z, e, prev_entry(prev, e->name), lg);
        if (st == CNN_OK) {
            z->loaded[z->n_loaded++] = i;
            continue;
        }
        if (st == CNN_ERR_IO && e->is_arch) e->failed = 0; /* no such file: missing, not failed */
        if (strict && !discover)
            return cnn_err(err, err_bytes, st, "model %s: %s", e->name, e->why);
        log_event(lg, e->failed ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, e->failed ? "model_failed" : "model_skipped",
                  json_pack("{s:s,s:s}", "model", e->name, "why", e->why));
    }
    if (!z->n_loaded)
        return cnn_err(err, err_bytes, CNN_ERR_MISSING,
                       "no model could be loaded from %s (expected files like %s/mobilenet_v3_large.safetensors)",
                       z->weights_dir, z->weights_dir);
    return CNN_OK;
}

static zoo *zoo_alloc(const char *weights_dir, const char *models_csv)
{
    zoo *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    atomic_init(&z->refs, 1);
    snprintf(z->weights_dir, sizeof z->weights_dir, "%s", weights_dir);
    snprintf(z->models_csv, sizeof z->models_csv, "%s", models_csv ? models_csv : "");
    return z;
}

cnn_status zoo_load(zoo **out, const char *weights_dir, const char *models_csv, const logger *lg, char *err,
                    size_t err_bytes)
{
    *out = NULL;
    zoo *z = zoo_alloc(weights_dir, models_csv);
    if (!z) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    z->generation = 1;
    cnn_status st = zoo_build(z, NULL, 1, lg, err, err_bytes);
    if (st != CNN_OK) {
        zoo_release(z);
        return st;
    }
    *out = z;
    return CNN_OK;
}

cnn_status zoo_reload(zoo **out, const zoo *prev, const logger *lg, char *err, size_t err_bytes)
{
    *out = NULL;
    zoo *z = zoo_alloc(prev->weights_dir, prev->models_csv);
    if (!z) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    z->generation = prev->generation + 1;
    z->n_warm_needed = prev->n_warm_needed;
    z->threads_per_worker = prev->threads_per_worker;
    cnn_status st = zoo_build(z, prev, 0, lg, err, err_bytes);
    if (st != CNN_OK) {
        zoo_release(z);
        return st;
    }
    *out = z;
    return CNN_OK;
}

zoo *zoo_acquire(zoo *z)
{
    atomic_fetch_add(&z->refs, 1);
    return z;
}

void zoo_release(zoo *z)
{
    if (!z || atomic_fetch_sub(&z->refs, 1) != 1) return;
    for (int i = 0; i < z->n_entries; i++) zoo_model_release(z->entries[i].held);
    free(z);
}

int zoo_default_entry(const zoo *z)
{
    int e = zoo_find(z, ZOO_DEFAULT_MODEL);
    return e >= 0 && z->entries[e].m ? e : z->loaded[0];
}

cnn_status zoo_default_name(const char *weights_dir, char *name, size_t name_bytes, char *err, size_t err_bytes)
{
    char path[1200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s.safetensors", weights_dir, ZOO_DEFAULT_MODEL);
    if (!stat(path, &sb)) {
        snprintf(name, name_bytes, "%s", ZOO_DEFAULT_MODEL);
        return CNN_OK;
    }
    int n_archs;
    const model_arch *archs = model_archs(&n_archs);
    for (int i = 0; i < n_archs; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", weights_dir, archs[i].name);
        if (!stat(path, &sb)) {
            snprintf(name, name_bytes, "%s", archs[i].name);
            return CNN_OK;
        }
    }
    char **stems = NULL;
    int n_stems = scan_dir(weights_dir, &stems);
    if (n_stems > 0) snprintf(name, name_bytes, "%s", stems[0]);
    for (int i = 0; i < n_stems; i++) free(stems[i]);
    free(stems);
    if (n_stems > 0) return CNN_OK;
    return cnn_err(err, err_bytes, CNN_ERR_MISSING, "no model file in %s (expected files like %s/%s.safetensors)",
                   weights_dir, weights_dir, ZOO_DEFAULT_MODEL);
}

void zoo_set_workers(zoo *z, int n_workers, int threads_per_worker)
{
    z->n_warm_needed = n_workers;
    z->threads_per_worker = threads_per_worker;
}

int zoo_find(const zoo *z, const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < z->n_entries; i++)
        if (!z->entries[i].is_arch && !strcmp(z->entries[i].name, name)) return i;
    const model_arch *arch = model_arch_find(name);
    for (int i = 0; arch && i < z->n_entries; i++)
        if (z->entries[i].is_arch && z->entries[i].arch == arch) return i;
    return -1;
}

int zoo_slot(const zoo *z, int entry)
{
    for (int s = 0; s < z->n_loaded; s++)
        if (z->loaded[s] == entry) return s;
    return -1;
}

zoo_state zoo_entry_state(const zoo *z, int entry)
{
    const zoo_entry *e = &z->entries[entry];
    if (!e->m) return e->failed ? ZOO_STATE_FAILED : ZOO_STATE_MISSING;
    return atomic_load(&e->n_warm) >= z->n_warm_needed ? ZOO_STATE_READY : ZOO_STATE_LOADED;
}

const char *zoo_state_name(zoo_state s)
{
    switch (s) {
    case ZOO_STATE_MISSING: return "missing";
    case ZOO_STATE_FAILED: return "failed";
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
        n += (size_t)snprintf(buf + n, buf_bytes - n, "%s%s", i ? ", " : "", z->entries[z->loaded[i]].name);
}

json_t *zoo_loaded_names_json(const zoo *z)
{
    json_t *a = json_array();
    for (int i = 0; a && i < z->n_loaded; i++) json_array_append_new(a, json_string(z->entries[z->loaded[i]].name));
    return a;
}

/* The double nearest to the shortest decimal that reads back as f (0.485f -> 0.485, not
 * 0.48500001430511475); printed with 9 significant digits (PIPELINE_JSON_FLAGS, as http_send_json
 * does) it shows exactly that decimal. */
static double float_shortest(float f)
{
    char buf[32];
    for (int digits = 1; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f; /* 9 significant digits always read back as f */
}

static json_t *floats3_json(const float *v)
{
    return json_pack("[f,f,f]", float_shortest(v[0]), float_shortest(v[1]), float_shortest(v[2]));
}

static json_t *meta_json(const model *m, const char *key)
{
    const char *v = model_meta(m, key);
    return v ? json_string(v) : json_null();
}

/* A metadata value that holds JSON (recipe) parsed, else the string, else null. */
static json_t *meta_parsed_json(const model *m, const char *key)
{
    const char *v = model_meta(m, key);
    if (!v) return json_null();
    json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
    return j ? j : json_string(v);
}

size_t zoo_ctx_bytes(const zoo *z, const model *m) { return model_ctx_bytes(m, z->threads_per_worker); }

json_t *zoo_entry_json(const zoo *z, int entry, int n_workers)
{
    const zoo_entry *e = &z->entries[entry];
    json_t *o = json_pack("{s:s,s:s,s:s?}", "name", e->name, "state", zoo_state_name(zoo_entry_state(z, entry)),
                          "architecture", e->arch ? e->arch->name : NULL);
    if (!o) return NULL;
    if (e->is_arch) {
        json_t *aliases = json_array();
        for (const char *const *a = e->arch->aliases; aliases && a && *a; a++)
            json_array_append_new(aliases, json_string(*a));
        json_object_set_new(o, "aliases", aliases);
    }
    if (!e->m) {
        json_object_set_new(o, "why", json_string(e->why));
        json_object_set_new(o, "weights_file", json_string(e->path));
        if (e->arch) {
            json_object_set_new(o, "input_size", json_integer(e->arch->input_size));
            json_object_set_new(o, "resize_size", json_integer(e->arch->resize_size));
        }
        return o;
    }
    const model *m = e->m;
    size_t weight_bytes = model_weight_bytes(m), arena_bytes = zoo_ctx_bytes(z, m);
    int own = model_has_own_labels(m);
    json_object_set_new(o, "fine_tuned", json_boolean(own));
    json_object_set_new(o, "input_size", json_integer(model_input_size(m)));
    json_object_set_new(o, "resize_size", json_integer(model_resize_size(m)));
    json_object_set_new(o, "mean", floats3_json(model_mean(m)));
    json_object_set_new(o, "std", floats3_json(model_std(m)));
    json_object_set_new(o, "classes", json_integer(model_num_labels(m)));
    json_object_set_new(o, "num_classes", json_integer(model_num_classes(m)));
    json_object_set_new(o, "labels_count", json_integer(model_num_labels(m)));
    if (own) {
        json_t *labels = json_array();
        for (int i = 0; labels && i < model_num_labels(m); i++)
            json_array_append_new(labels, json_string(model_class_label(m, i)));
        json_object_set_new(o, "labels", labels);
    }
    json_object_set_new(o, "base", meta_json(m, "base"));
    json_object_set_new(o, "recipe", meta_parsed_json(m, "recipe"));
    json_object_set_new(o, "val_accuracy", meta_parsed_json(m, "val_accuracy"));
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
