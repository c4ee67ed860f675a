/* Class-per-folder image datasets (`cnnserve train` and `eval`): ROOT/<class>/...images, one class per
 * top-level folder. The walk is deterministic (names sorted bytewise, depth first), follows symlinks
 * but never loops (a folder already on the current path is skipped with a warning), skips hidden
 * entries (".name") silently and non-image files (extension not .jpg/.jpeg/.png/.webp, any case) with
 * a warning. Images in sub-folders of a class folder belong to that class. The walker only lists:
 * whether a listed file can be read and decoded is for the caller to find out (and report). */
#ifndef CNN_DATASET_H
#define CNN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

/* Receives each warning (one line, no newline). */
typedef void (*dataset_warn_fn)(void *arg, const char *msg);

typedef struct {
    int min_classes;          /* fewer class folders is an error (CNN_ERR_ARG); 0 = no minimum */
    int allow_empty_classes;  /* 0: a class folder without images is an error (CNN_ERR_MISSING) */
    dataset_warn_fn warn;     /* NULL: warnings are dropped */
    void *warn_arg;
} dataset_opts;

typedef struct {
    char *path;               /* root/<class>/... as walked */
    int label;                /* class index 0..n_classes-1 */
} dataset_item;

typedef struct {
    int n_classes;
    char **folders;           /* class folder names, sorted */
    char **labels;            /* display names: the labels file's, else the folder name */
    size_t *n_class_items;    /* images per class */
    dataset_item *items;      /* grouped by class in class order, each class in walk order */
    size_t n_items;
    size_t n_skipped;         /* non-image files and unreadable entries passed over (warned) */
} dataset;

/* Walks root. labels_path (may be NULL): lines "folder<TAB>display name"; blank lines and lines
 * starting with '#' are ignored, a trailing CR is dropped; a line without a TAB, an empty field or a
 * folder named twice is an error (CNN_ERR_FORMAT naming the line); a folder that is not a class
 * folder is warned about. Errors: CNN_ERR_IO (root or labels unreadable), CNN_ERR_ARG (fewer than
 * min_classes classes), CNN_ERR_MISSING (empty class), CNN_ERR_FORMAT, CNN_ERR_NOMEM. On error *d
 * holds nothing to free. */
cnn_status dataset_load(dataset *d, const char *root, const char *labels_path, const dataset_opts *opts,
                        char *err, size_t err_bytes);
void dataset_free(dataset *d);

/* 1 when the file name has an image extension the walker lists. */
int dataset_is_image_name(const char *name);

/* Seeded split into training and validation, stratified: within each class the items are shuffled
 * (SplitMix64 from seed, classes in order) and the first round(n_c * val_fraction) go to validation,
 * keeping at least one training item per class that has one. is_val[i] (n_items entries) receives 1
 * for validation items. val_fraction in [0, 1). Same seed, same split. CNN_ERR_ARG for a fraction
 * out of range, CNN_ERR_NOMEM. */
cnn_status dataset_split(const dataset *d, double val_fraction, uint64_t seed, uint8_t *is_val);

#endif
