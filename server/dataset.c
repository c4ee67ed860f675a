/* Class-per-folder dataset walker (see dataset.h). */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../core/rng.h"

/* Deepest folder nesting below a class folder that is walked. */
#define DATASET_MAX_DEPTH 32

typedef struct {
    dev_t dev;
    ino_t ino;
} dir_id;

/* Walk state: the dataset being filled, the folders on the current path (loop detection). */
typedef struct {
    dataset *d;
    size_t cap_items;
    const dataset_opts *opts;
    dir_id path_ids[DATASET_MAX_DEPTH + 2];
    int depth;
    char *err;
    size_t err_bytes;
} walker;

static void walker_warn(const walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void walker_warn(const walker *w, const char *fmt, ...)
{
    if (!w->opts->warn) return;
    char msg[1280];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->opts->warn(w->opts->warn_arg, msg);
}

int dataset_is_image_name(const char *name)
{
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".webp"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return 1;
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* The entries of a folder except "." and "..", sorted bytewise. */
static cnn_status list_dir(const char *path, char ***out, size_t *n_out, char *err, size_t err_bytes)
{
    *out = NULL;
    *n_out = 0;
    DIR *dir = opendir(path);
    if (!dir) return cnn_err(err, err_bytes, CNN_ERR_IO, "cannot open folder %s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    cnn_status st = CNN_OK;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(dir))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            size_t new_cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, new_cap * sizeof *names);
            if (!grown) {
                st = CNN_ERR_NOMEM;
                break;
            }
            names = grown;
            cap = new_cap;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = CNN_ERR_NOMEM;
            break;
        }
        n++;
        errno = 0;
    }
    if (st == CNN_OK && errno)
        st = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot read folder %s: %s", path, strerror(errno));
    else if (st == CNN_ERR_NOMEM)
        cnn_err(err, err_bytes, st, "out of memory listing %s", path);
    closedir(dir);
    if (st != CNN_OK) {
        free_names(names, n);
        return st;
    }
    if (n) qsort(names, n, sizeof *names, cmp_names);
    *out = names;
    *n_out = n;
    return CNN_OK;
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return p;
}

static cnn_status add_item(walker *w, char *path, int label)
{
    dataset *d = w->d;
    if (d->n_items == w->cap_items) {
        size_t new_cap = w->cap_items ? 2 * w->cap_items : 256;
        dataset_item *grown = realloc(d->items, new_cap * sizeof *grown);
        if (!grown) return cnn_err(w->err, w->err_bytes, CNN_ERR_NOMEM, "out of memory listing images");
        d->items = grown;
        w->cap_items = new_cap;
    }
    d->items[d->n_items++] = (dataset_item){path, label};
    d->n_class_items[label]++;
    return CNN_OK;
}

/* Lists the images under folder `path` (already stat'ed as st) into class `label`, depth first. */
static cnn_status walk_folder(walker *w, const char *path, const struct stat *st, int label)
{
    for (int i = 0; i < w->depth; i++)
        if (w->path_ids[i].dev == st->st_dev && w->path_ids[i].ino == st->st_ino) {
            walker_warn(w, "%s: folder loop (a symlink to a folder above it), skipped", path);
            w->d->n_skipped++;
            return CNN_OK;
        }
    if (w->depth >= DATASET_MAX_DEPTH + 2) {
        walker_warn(w, "%s: nested deeper than %d folders, skipped", path, DATASET_MAX_DEPTH);
        w->d->n_skipped++;
        return CNN_OK;
    }
    char **names;
    size_t n_names;
    cnn_status s = list_dir(path, &names, &n_names, w->err, w->err_bytes);
    if (s == CNN_ERR_IO && w->depth > 1) { /* an unreadable sub-folder loses its images only */
        walker_warn(w, "%s", w->err);
        w->d->n_skipped++;
        return CNN_OK;
    }
    if (s != CNN_OK) return s;
    w->path_ids[w->depth++] = (dir_id){st->st_dev, st->st_ino};
    for (size_t i = 0; i < n_names && s == CNN_OK; i++) {
        if (names[i][0] == '.') continue; /* hidden: .DS_Store, .git, ._name ... */
        char *child = join_path(path, names[i]);
        if (!child) {
            s = cnn_err(w->err, w->err_bytes, CNN_ERR_NOMEM, "out of memory listing %s", path);
            break;
        }
        struct stat cst;
        if (stat(child, &cst) == 0 && S_ISDIR(cst.st_mode)) {
            s = walk_folder(w, child, &cst, label);
            free(child);
        } else if (dataset_is_image_name(names[i])) {
            s = add_item(w, child, label); /* unreadable ones are reported by the reader */
            if (s != CNN_OK) free(child);
        } else {
            walker_warn(w, "%s: not an image file (.jpg, .jpeg, .png, .webp), skipped", child);
            w->d->n_skipped++;
            free(child);
        }
    }
    w->depth--;
    free_names(names, n_names);
    return s;
}

/* Trims spaces and tabs at both ends in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    return s;
}

static cnn_status read_labels(walker *w, const char *labels_path)
{
    dataset *d = w->d;
    FILE *f = fopen(labels_path, "r");
    if (!f)
        return cnn_err(w->err, w->err_bytes, CNN_ERR_IO, "cannot open labels file %s: %s", labels_path,
                       strerror(errno));
    char line[4096];
    int line_no = 0;
    cnn_status s = CNN_OK;
    uint8_t *named = calloc((size_t)d->n_classes, 1);
    if (!named) s = cnn_err(w->err, w->err_bytes, CNN_ERR_NOMEM, "out of memory");
    while (s == CNN_OK && fgets(line, sizeof line, f)) {
        line_no++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n' && !feof(f)) {
            s = cnn_err(w->err, w->err_bytes, CNN_ERR_FORMAT, "%s:%d: line longer than %zu bytes", labels_path,
                        line_no, sizeof line - 2);
            break;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        char *p = line;
        while (*p == ' ') p++;
        if (!*p || *p == '#') continue;
        char *tab = strchr(line, '\t');
        if (!tab) {
            s = cnn_err(w->err, w->err_bytes, CNN_ERR_FORMAT, "%s:%d: expected 'folder<TAB>name'", labels_path,
                        line_no);
            break;
        }
        *tab = '\0';
        char *folder = trim(line), *name = trim(tab + 1);
        if (!*folder || !*name) {
            s = cnn_err(w->err, w->err_bytes, CNN_ERR_FORMAT, "%s:%d: empty folder or name", labels_path, line_no);
            break;
        }
        int k = -1;
        for (int c = 0; c < d->n_classes; c++)
            if (!strcmp(d->folders[c], folder)) k = c;
        if (k < 0) {
            walker_warn(w, "%s:%d: no class folder '%s' in the data, line ignored", labels_path, line_no, folder);
            continue;
        }
        if (named[k]) {
            s = cnn_err(w->err, w->err_bytes, CNN_ERR_FORMAT, "%s:%d: folder '%s' named twice", labels_path,
                        line_no, folder);
            break;
        }
        char *copy = strdup(name);
        if (!copy) {
            s = cnn_err(w->err, w->err_bytes, CNN_ERR_NOMEM, "out of memory");
            break;
        }
        free(d->labels[k]);
        d->labels[k] = copy;
        named[k] = 1;
    }
    if (s == CNN_OK && ferror(f))
        s = cnn_err(w->err, w->err_bytes, CNN_ERR_IO, "cannot read labels file %s", labels_path);
    for (int c = 0; s == CNN_OK && c < d->n_classes; c++)
        if (!named[c]) walker_warn(w, "%s: no name for class folder '%s', using the folder name", labels_path,
                                   d->folders[c]);
    free(named);
    fclose(f);
    return s;
}

cnn_status dataset_load(dataset *d, const char *root, const char *labels_path, const dataset_opts *opts,
                        char *err, size_t err_bytes)
{
    static const dataset_opts no_opts = {0};
    memset(d, 0, sizeof *d);
    walker w = {.d = d, .opts = opts ? opts : &no_opts, .err = err, .err_bytes = err_bytes};
    struct stat rst;
    if (stat(root, &rst) != 0)
        return cnn_err(err, err_bytes, CNN_ERR_IO, "cannot open data folder %s: %s", root, strerror(errno));
    if (!S_ISDIR(rst.st_mode)) return cnn_err(err, err_bytes, CNN_ERR_IO, "data %s is not a folder", root);
    char **names;
    size_t n_names;
    cnn_status s = list_dir(root, &names, &n_names, err, err_bytes);
    if (s != CNN_OK) return s;

    /* Class folders first (sorted), so the classes are known before their images are listed. */
    char **class_paths = calloc(n_names ? n_names : 1, sizeof *class_paths);
    struct stat *class_st = calloc(n_names ? n_names : 1, sizeof *class_st);
    d->folders = calloc(n_names ? n_names : 1, sizeof *d->folders);
    d->labels = calloc(n_names ? n_names : 1, sizeof *d->labels);
    d->n_class_items = calloc(n_names ? n_names : 1, sizeof *d->n_class_items);
    if (!class_paths || !class_st || !d->folders || !d->labels || !d->n_class_items) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_names; i++) {
        if (names[i][0] == '.') continue;
        char *path = join_path(root, names[i]);
        if (!path) {
            s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
            goto done;
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            walker_warn(&w, "%s: %s, skipped", path, strerror(errno));
            d->n_skipped++;
            free(path);
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            walker_warn(&w, "%s: not in a class folder, skipped", path);
            d->n_skipped++;
            free(path);
            continue;
        }
        int k = d->n_classes;
        d->folders[k] = strdup(names[i]);
        d->labels[k] = strdup(names[i]);
        class_paths[k] = path;
        class_st[k] = st;
        d->n_classes++;
        if (!d->folders[k] || !d->labels[k]) {
            s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    if (d->n_classes < w.opts->min_classes) {
        s = cnn_err(err, err_bytes, CNN_ERR_ARG, "%s: %d class folder%s, at least %d needed (one folder per class)",
                    root, d->n_classes, d->n_classes == 1 ? "" : "s", w.opts->min_classes);
        goto done;
    }
    w.path_ids[0] = (dir_id){rst.st_dev, rst.st_ino};
    w.depth = 1;
    for (int k = 0; k < d->n_classes && s == CNN_OK; k++) s = walk_folder(&w, class_paths[k], &class_st[k], k);
    if (s != CNN_OK) goto done;
    for (int k = 0; k < d->n_classes && !w.opts->allow_empty_classes; k++)
        if (!d->n_class_items[k]) {
            s = cnn_err(err, err_bytes, CNN_ERR_MISSING, "class folder %s has no images (.jpg, .jpeg, .png, .webp)",
                        class_paths[k]);
            goto done;
        }
    if (labels_path) s = read_labels(&w, labels_path);
done:
    if (class_paths)
        for (int k = 0; k < d->n_classes; k++) free(class_paths[k]);
    free(class_paths);
    free(class_st);
    free_names(names, n_names);
    if (s != CNN_OK) dataset_free(d);
    return s;
}

void dataset_free(dataset *d)
{
    for (int k = 0; k < d->n_classes; k++) {
        if (d->folders) free(d->folders[k]);
        if (d->labels) free(d->labels[k]);
    }
    for (size_t i = 0; i < d->n_items; i++) free(d->items[i].path);
    free(d->folders);
    free(d->labels);
    free(d->n_class_items);
    free(d->items);
    memset(d, 0, sizeof *d);
}

cnn_status dataset_split(const dataset *d, double val_fraction, uint64_t seed, uint8_t *is_val)
{
    if (!(val_fraction >= 0.0 && val_fraction < 1.0)) return CNN_ERR_ARG;
    memset(is_val, 0, d->n_items);
    size_t max_n = 0;
    for (int k = 0; k < d->n_classes; k++)
        if (d->n_class_items[k] > max_n) max_n = d->n_class_items[k];
    if (max_n > INT32_MAX) return CNN_ERR_ARG;
    int *idx = malloc((max_n ? max_n : 1) * sizeof *idx);
    if (!idx) return CNN_ERR_NOMEM;
    rng r;
    rng_init(&r, seed);
    size_t first = 0; /* items are grouped by class */
    for (int k = 0; k < d->n_classes; k++) {
        const int n = (int)d->n_class_items[k];
        for (int i = 0; i < n; i++) idx[i] = i;
        rng_shuffle(&r, idx, n);
        int n_val = (int)floor(n * val_fraction + 0.5);
        if (n_val >= n && n > 0) n_val = n - 1;
        for (int i = 0; i < n_val; i++) is_val[first + (size_t)idx[i]] = 1;
        first += (size_t)n;
    }
    free(idx);
    return CNN_OK;
}
