/* Model generations (server/zoo.c): discovery of fine-tuned files next to the architectures' files,
 * names, failed entries with their reasons, the strict start-up model list, and zoo_reload keeping
 * unchanged files' models, reloading changed ones, dropping removed ones, while an older generation
 * stays usable until released. Fine-tuned stand-ins are the real shufflenet file with a 1000-entry
 * `labels` list in its metadata (same tensors). Needs ../shared/weights; skips otherwise. */
#include <cblas.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../server/zoo.h"
#include "../test.h"

static char base[1100];

/* Copies the safetensors file src to dst (via dst.tmp + rename, as a careful writer does) with
 * __metadata__ replaced by meta (a JSON object). 0 on success. */
static int write_with_meta(const char *src, const char *dst, json_t *meta)
{
    FILE *f = fopen(src, "rb");
    if (!f) return -1;
    unsigned char len[8];
    uint64_t n = 0;
    int ok = fread(len, 1, 8, f) == 8;
    for (int i = 0; i < 8; i++) n |= (uint64_t)len[i] << (8 * i);
    char *text = ok ? malloc(n + 1) : NULL;
    ok = text && fread(text, 1, n, f) == n;
    json_t *h = ok ? json_loadb(text, n, 0, NULL) : NULL;
    free(text);
    ok = h != NULL;
    if (ok) json_object_set(h, "__metadata__", meta);
    char *out = ok ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *g = out ? fopen(tmp, "wb") : NULL;
    ok = g != NULL;
    if (ok) {
        uint64_t m = strlen(out);
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)(m >> (8 * i));
        ok = fwrite(len, 1, 8, g) == 8 && fwrite(out, 1, m, g) == m;
        char buf[1 << 16];
        size_t k;
        while (ok && (k = fread(buf, 1, sizeof buf, f)) > 0) ok = fwrite(buf, 1, k, g) == k;
        ok = fclose(g) == 0 && ok && rename(tmp, dst) == 0;
    }
    free(out);
    fclose(f);
    return ok ? 0 : -1;
}

/* A fine-tuned stand-in: 1000 labels prefix0 .. prefix999. */
static int write_finetuned(const char *dir, const char *name, const char *prefix)
{
    json_t *labels = json_array();
    char l[64], path[1200];
    for (int i = 0; i < 1000; i++) {
        snprintf(l, sizeof l, "%s%d", prefix, i);
        json_array_append_new(labels, json_string(l));
    }
    char *text = json_dumps(labels, JSON_COMPACT);
    json_decref(labels);
    json_t *meta = json_pack("{s:s,s:s,s:s}", "architecture", "shufflenet_v2_x1_0", "labels", text, "base",
                             "shufflenet_v2_x1_0.safetensors");
    free(text);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    int rc = write_with_meta(base, path, meta);
    json_decref(meta);
    return rc;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void rm_file(const char *dir, const char *name)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static const zoo_entry *entry(const zoo *z, const char *name)
{
    int e = zoo_find(z, name);
    return e < 0 ? NULL : &z->entries[e];
}

int main(void)
{
    openblas_set_num_threads(1);
    const char *sh = getenv("CNN_SHARED");
    snprintf(base, sizeof base, "%s/weights/shufflenet_v2_x1_0.safetensors", sh ? sh : "../shared");
    if (access(base, R_OK)) {
        test_skip("zoo: discovery and reload", "../shared/weights/shufflenet_v2_x1_0.safetensors absent");
        return test_finish();
    }
    logger lg;
    log_init(&lg, LOG_FORMAT_TEXT);
    char dir[] = "/tmp/cnnserve-zoo-XXXXXX", path[1200], err[1024];
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/shufflenet_v2_x1_0.safetensors", dir);
    int ok = symlink(base, path) == 0 && write_finetuned(dir, "fish", "fish") == 0 &&
             write_finetuned(dir, "mnv3s", "x") == 0 && write_finetuned(dir, "x y", "x") == 0 &&
             write_finetuned(dir, ".hidden", "x") == 0;
    write_text(dir, "junk.safetensors", "junk");
    write_text(dir, "notes.txt", "not a model");
    snprintf(path, sizeof path, "%s/imagenet_copy.safetensors", dir);
    ok = ok && symlink(base, path) == 0;

    test_begin();
    T_CHECK(ok, "fixture files");
    zoo *z = NULL;
    cnn_status st = zoo_load(&z, dir, "", &lg, err, sizeof err);
    T_CHECK(st == CNN_OK, "zoo_load: %s", err);
    if (z) {
        /* 5 architectures, then the other files sorted by name; .hidden and notes.txt ignored. */
        static const char *const names[] = {"mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2_x1_0", "alexnet",
                                            "inception_v3", "fish", "imagenet_copy", "junk", "mnv3s", "x y"};
        static const zoo_state states[] = {ZOO_STATE_MISSING, ZOO_STATE_MISSING, ZOO_STATE_LOADED, ZOO_STATE_MISSING,
                                           ZOO_STATE_MISSING, ZOO_STATE_LOADED, ZOO_STATE_FAILED, ZOO_STATE_FAILED,
                                           ZOO_STATE_FAILED, ZOO_STATE_FAILED};
        T_CHECK(z->n_entries == 10 && z->n_loaded == 2 && z->generation == 1, "%d entries, %d loaded", z->n_entries,
                z->n_loaded);
        z->n_warm_needed = 1; /* no workers: loaded, not ready */
        for (int i = 0; i < z->n_entries && i < 10; i++) {
            T_CHECK(!strcmp(z->entries[i].name, names[i]), "entry %d: %s, want %s", i, z->entries[i].name, names[i]);
            T_CHECK(zoo_entry_state(z, i) == states[i], "%s: state %s (%s)", names[i],
                    zoo_state_name(zoo_entry_state(z, i)), z->entries[i].why);
        }
        const zoo_entry *e;
        T_CHECK((e = entry(z, "fish")) && e->m && model_num_labels(e->m) == 1000 &&
                    !strcmp(model_class_label(e->m, 7), "fish7") && !strcmp(model_name(e->m), "fish"),
                "fish");
        T_CHECK(zoo_find(z, "FISH") < 0 && zoo_find(z, "SHUFFLENET") == 2 && zoo_find(z, "nosuch") < 0, "zoo_find");
        T_CHECK((e = entry(z, "junk")) && strstr(e->why, "junk.safetensors"), "junk: %s", e ? e->why : "");
        T_CHECK((e = entry(z, "imagenet_copy")) && strstr(e->why, "no __metadata__ labels list"), "copy: %s", e ? e->why : "");
        T_CHECK((e = entry(z, "x y")) && strstr(e->why, "cannot be a model name"), "x y: %s", e ? e->why : "");
        T_CHECK(z->n_entries > 8 && strstr(z->entries[8].why, "alias of mobilenet_v3_small"), "mnv3s: %s",
                z->n_entries > 8 ? z->entries[8].why : "");
        T_CHECK((e = entry(z, "alexnet")) && !e->failed && strstr(e->why, "not found"), "alexnet missing");
        json_t *j = zoo_entry_json(z, zoo_find(z, "fish"), 2);
        T_CHECK(j && json_integer_value(json_object_get(j, "classes")) == 1000 &&
                    json_array_size(json_object_get(j, "labels")) == 1000 &&
                    !strcmp(json_string_value(json_object_get(j, "base")), "shufflenet_v2_x1_0.safetensors"),
                "fish json");
        json_decref(j);
    }
    test_end("zoo: architectures and fine-tuned files discovered, bad ones failed with the reason");

    test_begin();
    zoo *y = NULL;
    st = zoo_load(&y, dir, "fish, nosuch", &lg, err, sizeof err);
    T_CHECK(st == CNN_ERR_ARG && !y && strstr(err, "unknown model 'nosuch'") && strstr(err, "fish"), "%s", err);
    st = zoo_load(&y, dir, "junk", &lg, err, sizeof err);
    T_CHECK(st != CNN_OK && !y && strstr(err, "model junk"), "%s", err);
    st = zoo_load(&y, dir, "fish,shufflenet", &lg, err, sizeof err);
    T_CHECK(st == CNN_OK && y && y->n_loaded == 2, "%s", err);
    if (y) {
        write_finetuned(dir, "birds", "bird");
        zoo *y2 = NULL;
        st = zoo_reload(&y2, y, &lg, err, sizeof err);
        T_CHECK(st == CNN_OK && y2 && y2->n_loaded == 2 && zoo_find(y2, "birds") < 0 && y2->n_kept == 2,
                "a reload keeps to the model list");
        zoo_release(y2);
        zoo_release(y);
        rm_file(dir, "birds.safetensors");
    }
    test_end("zoo: a named model must exist and load; reloads keep to the list");

    test_begin();
    if (z) {
        zoo *z2 = NULL;
        st = zoo_reload(&z2, z, &lg, err, sizeof err);
        T_CHECK(st == CNN_OK && z2 && z2->generation == 2 && z2->n_kept == 2 && z2->n_loaded_now == 0,
                "unchanged: kept %d loaded %d", z2 ? z2->n_kept : -1, z2 ? z2->n_loaded_now : -1);
        T_CHECK(z2 && entry(z2, "fish")->m == entry(z, "fish")->m, "unchanged file keeps its model");
        /* change fish (new file renamed over it), add birds, remove the junk */
        write_finetuned(dir, "fish", "newfish");
        write_finetuned(dir, "birds", "bird");
        rm_file(dir, "junk.safetensors");
        zoo *z3 = NULL;
        st = z2 ? zoo_reload(&z3, z2, &lg, err, sizeof err) : CNN_ERR_ARG;
        T_CHECK(st == CNN_OK && z3 && z3->n_loaded == 3 && z3->n_loaded_now == 2 && z3->n_kept == 1, "%s", err);
        if (z3) {
            const zoo_entry *f3 = entry(z3, "fish");
            T_CHECK(f3 && f3->m != entry(z, "fish")->m && !strcmp(model_class_label(f3->m, 3), "newfish3"), "fish reloaded");
            T_CHECK(entry(z3, "birds") && entry(z3, "birds")->m, "birds added");
            T_CHECK(!entry(z3, "junk"), "junk dropped");
            T_CHECK(entry(z3, "shufflenet")->m == entry(z, "shufflenet")->m, "shufflenet kept");
        }
        /* The newer generations go first; the first one's models must still be intact. */
        zoo_release(z3);
        zoo_release(z2);
        const zoo_entry *f = entry(z, "fish");
        T_CHECK(f && f->m && !strcmp(model_class_label(f->m, 999), "fish999"), "old generation intact");
    }
    test_end("zoo_reload: unchanged files kept, changed reloaded, new added, removed dropped; old generation intact");

    test_begin();
    if (z) {
        rm_file(dir, "shufflenet_v2_x1_0.safetensors");
        rm_file(dir, "fish.safetensors");
        rm_file(dir, "birds.safetensors");
        zoo *z4 = NULL;
        st = zoo_reload(&z4, z, &lg, err, sizeof err);
        T_CHECK(st == CNN_ERR_MISSING && !z4 && strstr(err, "no model could be loaded"), "%s", err);
        zoo_release(z4);
    }
    test_end("zoo_reload: refused when no model would be left");
    zoo_release(z);

    rm_file(dir, "mnv3s.safetensors");
    rm_file(dir, "x y.safetensors");
    rm_file(dir, ".hidden.safetensors");
    rm_file(dir, "imagenet_copy.safetensors");
    rm_file(dir, "notes.txt");
    rmdir(dir);
    return test_finish();
}
