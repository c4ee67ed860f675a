#include "reports.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

const char *reports_content_type(const char *rel_path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".md", "text/plain; charset=utf-8"},  {".txt", "text/plain; charset=utf-8"},
        {".csv", "text/plain; charset=utf-8"}, {".tsv", "text/plain; charset=utf-8"},
        {".log", "text/plain; charset=utf-8"}, {".json", "application/json"},
        {".png", "image/png"},                 {".svg", "image/svg+xml"},
        {".jpg", "image/jpeg"},                {".jpeg", "image/jpeg"},
    };
    const char *slash = strrchr(rel_path, '/');
    const char *dot = strrchr(slash ? slash + 1 : rel_path, '.');
    if (!dot || dot == (slash ? slash + 1 : rel_path)) return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(dot, types[i].ext)) return types[i].type;
    return NULL;
}

/* 1 when real (a resolved path) is root itself or below it. */
static int is_inside(const char *root, const char *real)
{
    size_t n = strlen(root);
    if (strncmp(real, root, n)) return 0;
    return real[n] == '\0' || real[n] == '/' || (n == 1 && root[0] == '/');
}

static int path_ok(const char *rel)
{
    size_t n = strlen(rel);
    if (n == 0 || n > REPORTS_MAX_PATH || rel[0] == '/') return 0;
    const char *seg = rel;
    for (const char *p = rel;; p++) {
        if (*p == '/' || *p == '\0') {
            if (p == seg || *seg == '.') return 0; /* empty, ".", ".." or hidden */
            if (*p == '\0') return 1;
            seg = p + 1;
        } else if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\') {
            return 0;
        }
    }
}

cnn_status reports_open(const char *dir, const char *rel_path, int *fd, struct stat *st, char *err, size_t err_bytes)
{
    *fd = -1;
    if (!dir || !dir[0]) return cnn_err(err, err_bytes, CNN_ERR_MISSING, "no reports directory is configured");
    if (!path_ok(rel_path)) return cnn_err(err, err_bytes, CNN_ERR_ARG, "bad report path");
    if (!reports_content_type(rel_path))
        return cnn_err(err, err_bytes, CNN_ERR_MISSING, "not a report file type (md, txt, csv, tsv, log, json, png, svg, jpg)");
    char root[PATH_MAX], real[PATH_MAX], joined[PATH_MAX];
    if (!realpath(dir, root)) return cnn_err(err, err_bytes, CNN_ERR_IO, "reports directory: %s", strerror(errno));
    if ((size_t)snprintf(joined, sizeof joined, "%s/%s", root, rel_path) >= sizeof joined)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "report path too long");
    if (!realpath(joined, real) || !is_inside(root, real))
        return cnn_err(err, err_bytes, CNN_ERR_MISSING, "no such report");
    /* O_NONBLOCK: a FIFO placed there must not block the event loop (fstat rejects it next). */
    int f = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (f < 0) return cnn_err(err, err_bytes, errno == ENOENT ? CNN_ERR_MISSING : CNN_ERR_IO, "open: %s", strerror(errno));
    if (fstat(f, st) != 0 || !S_ISREG(st->st_mode)) {
        close(f);
        return cnn_err(err, err_bytes, CNN_ERR_MISSING, "no such report");
    }
    *fd = f;
    return CNN_OK;
}

typedef struct {
    const char *root;   /* resolved reports directory */
    json_t *files;
    int truncated;
} walk_state;

static int skip_hidden(const struct dirent *d) { return d->d_name[0] != '.'; }

/* Lists dir_path (rel = its path below the root, "" for the root) in name order, depth first. */
static int walk(walk_state *w, const char *dir_path, const char *rel, int depth)
{
    struct dirent **names = NULL;
    int n = scandir(dir_path, &names, skip_hidden, alphasort);
    if (n < 0) return 0; /* unreadable directory: nothing to list there */
    int ok = 1;
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX], sub[REPORTS_MAX_PATH + 1], real[PATH_MAX];
        struct stat st;
        int fits = (size_t)snprintf(path, sizeof path, "%s/%s", dir_path, names[i]->d_name) < sizeof path &&
                   (size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", names[i]->d_name) < sizeof sub;
        if (ok && !w->truncated && fits && stat(path, &st) == 0 && realpath(path, real) && is_inside(w->root, real)) {
            if (S_ISDIR(st.st_mode) && depth < REPORTS_MAX_DEPTH) {
                ok = walk(w, path, sub, depth + 1);
            } else if (S_ISREG(st.st_mode) && reports_content_type(sub) && path_ok(sub)) {
                if (json_array_size(w->files) >= REPORTS_MAX_FILES) {
                    w->truncated = 1;
                } else {
                    char when[32];
                    struct tm tm;
                    gmtime_r(&st.st_mtime, &tm);
                    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
                    json_t *f = json_pack("{s:s,s:I,s:s,s:s}", "path", sub, "bytes", (json_int_t)st.st_size,
                                          "modified", when, "type", reports_content_type(sub));
                    ok = f && json_array_append_new(w->files, f) == 0;
                }
            }
        }
        free(names[i]);
    }
    free(names);
    return ok;
}

json_t *reports_list_json(const char *dir)
{
    json_t *files = json_array();
    if (!files) return NULL;
    char root[PATH_MAX];
    int configured = dir && dir[0];
    walk_state w = {root, files, 0};
    if (configured && realpath(dir, root) && !walk(&w, root, "", 0)) {
        json_decref(files);
        return NULL;
    }
    return json_pack("{s:b,s:o,s:b}", "configured", configured, "files", files, "truncated", w.truncated);
}
