/* server/dataset: the class-per-folder walker (order, hidden and non-image files, nested and empty
 * folders, symlink loops, labels files) and the seeded stratified split. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../server/dataset.h"
#include "../test.h"

static char root[256];

static void put_file(const char *rel, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

static void put_dir(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    mkdir(path, 0755);
}

static void put_link(const char *target, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    if (symlink(target, path)) perror(path);
}

/* Collects warnings: count and concatenated text. */
typedef struct {
    int n;
    char text[8192];
} warnings;

static void collect(void *arg, const char *msg)
{
    warnings *w = arg;
    w->n++;
    size_t used = strlen(w->text);
    snprintf(w->text + used, sizeof w->text - used, "%s\n", msg);
}

static const char *rel(const char *path) { return path + strlen(root) + 1; }

static void build_tree(void)
{
    put_dir("a");
    put_file("a/1.jpeg", "not really a jpeg: the walker only lists");
    put_dir("b");
    put_file("b/y.PNG", "x");
    put_file("b/x.jpg", "x");
    put_file("b/notes.txt", "x");
    put_file("b/.hidden.jpg", "x");
    put_file("b/noext", "x");
    put_dir("b/sub");
    put_file("b/sub/z.webp", "x");
    put_dir("b/sub/.git");
    put_file("b/sub/.git/q.jpg", "x");
    put_link("..", "b/sub/up");        /* loop to b */
    put_link("../..", "b/sub/root");   /* loop to the root */
    put_link("/nonexistent/cnnserve", "b/broken.jpg"); /* dangling: listed, the reader reports it */
    put_dir("c");                      /* empty class */
    put_file("c/readme.md", "x");
    put_link("a", "d");                /* a class folder that is a symlink */
    put_dir(".hiddenclass");
    put_file(".hiddenclass/k.jpg", "x");
    put_file("README.md", "x");
}

static void test_walk(void)
{
    test_begin();
    dataset d;
    char err[512];
    warnings w = {0};
    dataset_opts o = {.min_classes = 2, .allow_empty_classes = 1, .warn = collect, .warn_arg = &w};
    cnn_status s = dataset_load(&d, root, NULL, &o, err, sizeof err);
    T_CHECK(s == CNN_OK, "load: %s", err);
    if (s == CNN_OK) {
        T_CHECK(d.n_classes == 4, "classes %d", d.n_classes);
        const char *want_folders[] = {"a", "b", "c", "d"};
        for (int k = 0; k < 4 && k < d.n_classes; k++) {
            T_CHECK(!strcmp(d.folders[k], want_folders[k]), "folder %d %s", k, d.folders[k]);
            T_CHECK(!strcmp(d.labels[k], want_folders[k]), "label %d %s", k, d.labels[k]);
        }
        const struct { const char *path; int label; } want[] = {
            {"a/1.jpeg", 0}, {"b/broken.jpg", 1}, {"b/sub/z.webp", 1}, {"b/x.jpg", 1}, {"b/y.PNG", 1},
            {"d/1.jpeg", 3},
        };
        T_CHECK(d.n_items == 6, "items %zu", d.n_items);
        for (size_t i = 0; i < d.n_items && i < 6; i++) {
            T_CHECK(!strcmp(rel(d.items[i].path), want[i].path) && d.items[i].label == want[i].label,
                    "item %zu: %s %d, want %s %d", i, rel(d.items[i].path), d.items[i].label, want[i].path,
                    want[i].label);
        }
        T_CHECK(d.n_class_items[0] == 1 && d.n_class_items[1] == 4 && d.n_class_items[2] == 0 &&
                    d.n_class_items[3] == 1, "per-class counts");
        /* notes.txt, noext, c/readme.md, README.md (root), two loops */
        T_CHECK(d.n_skipped == 6, "skipped %zu:\n%s", d.n_skipped, w.text);
        T_CHECK(strstr(w.text, "notes.txt: not an image"), "non-image warned: %s", w.text);
        T_CHECK(strstr(w.text, "sub/up: folder loop") && strstr(w.text, "sub/root: folder loop"), "loops: %s", w.text);
        T_CHECK(strstr(w.text, "README.md: not in a class folder"), "root file: %s", w.text);
        T_CHECK(!strstr(w.text, "hidden"), "hidden entries are silent: %s", w.text);
        dataset_free(&d);
    }
    test_end("dataset: sorted classes and images, nested folders, hidden/non-image skipped, loops safe");
}

static void test_errors(void)
{
    test_begin();
    dataset d;
    char err[512];
    dataset_opts o = {.min_classes = 2};
    cnn_status s = dataset_load(&d, root, NULL, &o, err, sizeof err);
    T_CHECK(s == CNN_ERR_MISSING && strstr(err, "/c has no images"), "empty class: %d %s", s, err);
    o.allow_empty_classes = 1;
    o.min_classes = 5;
    s = dataset_load(&d, root, NULL, &o, err, sizeof err);
    T_CHECK(s == CNN_ERR_ARG && strstr(err, "4 class folders, at least 5"), "too few classes: %d %s", s, err);
    char path[512];
    snprintf(path, sizeof path, "%s/a", root);
    o.min_classes = 2;
    s = dataset_load(&d, path, NULL, &o, err, sizeof err);
    T_CHECK(s == CNN_ERR_ARG && strstr(err, "0 class folders"), "no class folders: %d %s", s, err);
    snprintf(path, sizeof path, "%s/missing", root);
    s = dataset_load(&d, path, NULL, &o, err, sizeof err);
    T_CHECK(s == CNN_ERR_IO && strstr(err, "cannot open data folder"), "missing root: %d %s", s, err);
    snprintf(path, sizeof path, "%s/README.md", root);
    s = dataset_load(&d, path, NULL, &o, err, sizeof err);
    T_CHECK(s == CNN_ERR_IO && strstr(err, "not a folder"), "root is a file: %d %s", s, err);
    test_end("dataset: <2 classes, empty class, missing or non-folder root are clear errors");
}

static cnn_status load_labels(const char *content, dataset *d, warnings *w, char *err, size_t err_bytes)
{
    char path[512];
    snprintf(path, sizeof path, "%s.labels", root);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
    dataset_opts o = {.min_classes = 2, .allow_empty_classes = 1, .warn = collect, .warn_arg = w};
    cnn_status s = dataset_load(d, root, path, &o, err, err_bytes);
    unlink(path);
    return s;
}

static void test_labels(void)
{
    test_begin();
    dataset d;
    char err[512];
    warnings w = {0};
    cnn_status s = load_labels("# folder\tname\r\n\na\tApple pie\r\nb\t  Banana \ncc\tunknown\nd\tDate", &d, &w,
                               err, sizeof err);
    T_CHECK(s == CNN_OK, "labels: %s", err);
    if (s == CNN_OK) {
        T_CHECK(!strcmp(d.labels[0], "Apple pie") && !strcmp(d.labels[1], "Banana") && !strcmp(d.labels[2], "c") &&
                    !strcmp(d.labels[3], "Date"), "labels %s|%s|%s|%s", d.labels[0], d.labels[1], d.labels[2],
                d.labels[3]);
        T_CHECK(!strcmp(d.folders[0], "a"), "folders unchanged");
        T_CHECK(strstr(w.text, "no class folder 'cc'") && strstr(w.text, "no name for class folder 'c'"),
                "warnings: %s", w.text);
        dataset_free(&d);
    }
    s = load_labels("a\tA\nb B\n", &d, &w, err, sizeof err);
    T_CHECK(s == CNN_ERR_FORMAT && strstr(err, ":2: expected 'folder<TAB>name'"), "no tab: %d %s", s, err);
    s = load_labels("a\tA\na\tB\n", &d, &w, err, sizeof err);
    T_CHECK(s == CNN_ERR_FORMAT && strstr(err, ":2: folder 'a' named twice"), "duplicate: %d %s", s, err);
    s = load_labels("a\t \n", &d, &w, err, sizeof err);
    T_CHECK(s == CNN_ERR_FORMAT && strstr(err, ":1: empty folder or name"), "empty name: %d %s", s, err);
    dataset_opts o = {.allow_empty_classes = 1};
    s = dataset_load(&d, root, "/nonexistent/labels.tsv", &o, err, sizeof err);
    T_CHECK(s == CNN_ERR_IO && strstr(err, "cannot open labels file"), "missing labels file: %d %s", s, err);
    test_end("dataset: labels file (comments, CRLF, trimming) and its errors");
}

static void test_split(void)
{
    test_begin();
    /* A synthetic dataset: 3 classes of 10, 7 and 1 items. */
    dataset d = {0};
    size_t counts[3] = {10, 7, 1};
    d.n_classes = 3;
    d.n_class_items = counts;
    d.n_items = 18;
    uint8_t a[18], b[18], c[18];
    T_CHECK(dataset_split(&d, 0.3, 42, a) == CNN_OK, "split");
    T_CHECK(dataset_split(&d, 0.3, 42, b) == CNN_OK && !memcmp(a, b, sizeof a), "same seed, same split");
    int n_val[3] = {0};
    for (int i = 0; i < 18; i++) n_val[i < 10 ? 0 : i < 17 ? 1 : 2] += a[i];
    T_CHECK(n_val[0] == 3 && n_val[1] == 2 && n_val[2] == 0, "stratified counts %d %d %d", n_val[0], n_val[1],
            n_val[2]);
    int differs = 0;
    for (uint64_t seed = 1; seed < 6 && !differs; seed++) {
        T_CHECK(dataset_split(&d, 0.3, seed, c) == CNN_OK, "split");
        differs = memcmp(a, c, sizeof a) != 0;
    }
    T_CHECK(differs, "other seeds give other splits");
    T_CHECK(dataset_split(&d, 0.0, 42, c) == CNN_OK, "split 0");
    int any = 0;
    for (int i = 0; i < 18; i++) any |= c[i];
    T_CHECK(!any, "val fraction 0: no validation items");
    T_CHECK(dataset_split(&d, 1.0, 42, c) == CNN_ERR_ARG && dataset_split(&d, -0.1, 42, c) == CNN_ERR_ARG,
            "fraction out of range");
    test_end("dataset: seeded stratified split (deterministic, per-class rounding, range)");
}

static void test_extensions(void)
{
    test_begin();
    T_CHECK(dataset_is_image_name("a.jpg") && dataset_is_image_name("a.JPEG") && dataset_is_image_name("x.y.png") &&
                dataset_is_image_name("n.WebP"), "image names");
    T_CHECK(!dataset_is_image_name(".jpg") && !dataset_is_image_name("jpg") && !dataset_is_image_name("a.gif") &&
                !dataset_is_image_name("a.jpg.txt") && !dataset_is_image_name("a."), "non-image names");
    test_end("dataset: image extensions");
}

int main(void)
{
    snprintf(root, sizeof root, "%s/cnnserve-dataset-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    build_tree();
    test_walk();
    test_errors();
    test_labels();
    test_split();
    test_extensions();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", root);
    return test_finish();
}
