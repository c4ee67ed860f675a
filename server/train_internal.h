/* Shared between the two modes of `cnnserve train` (train_cli.c: flags, head mode; train_full.c:
 * full fine-tuning): the configuration, the console, the output metadata and small file helpers. */
#ifndef CNN_TRAIN_INTERNAL_H
#define CNN_TRAIN_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "../core/weights.h"
#include "../models/model.h"
#include "dataset.h"

typedef struct {
    char base[64], weights_dir[1024], data[1024], out[1024], name[128], labels[1024], mode[16], log_json[1024];
    int epochs, batch, n_threads, raw_features;
    double lr, val_split, momentum, weight_decay;
    int64_t seed, max_pixels;
    int show_help;
    /* --mode full (unset: the sentinels of train_defaults, NAN / -1 / "") */
    char optimizer[16], schedule[16], bn[16], dropout[8], checkpoint_dir[1024];
    double lr_backbone, gamma, clip_grad;
    int step_size, warmup_epochs, nesterov, resume, no_bn_bias_decay;
} train_config;

/* Warnings and one progress line on stderr that they do not garble. */
typedef struct {
    pthread_mutex_t lock;
    int tty;           /* stderr is a terminal: the progress line is redrawn in place */
    int line_shown;    /* a progress line is on screen */
} console;

void console_warn(void *arg, const char *msg);
void console_progress(console *c, const char *line);
void console_end_progress(console *c);

/* A JSON real, or null when not finite. */
json_t *train_json_num(double v);

/* Writes text (plus a newline) to path through a temporary file, fsync and a rename. */
cnn_status train_write_text_atomic(const char *path, const char *text, char *err, size_t err_bytes);

/* The __metadata__ of a trained file: architecture, num_classes, labels, folders, mean, std, padding,
 * base, recipe, source, val_accuracy (when finite) and the base's resize/crop/license. Points into
 * its own buffers and into base (keep base open while kv is used). */
typedef struct {
    weights_meta_kv kv[16];
    size_t n;
    char *labels, *folders, *recipe;
    char k_text[16], mean[96], std[96], val_text[32], base_name[1200];
} train_meta;

cnn_status train_meta_init(train_meta *tm, const model *m, const weights *base, const char *base_path,
                           const dataset *d, json_t *recipe, double val_accuracy, char *err, size_t err_bytes);
void train_meta_free(train_meta *tm);

/* Walks --data (with --labels), checks the class names are UTF-8; prints the error and returns 1, or 0. */
int train_load_dataset(const train_config *c, console *con, dataset *d);

/* Sorts the usable items (ok[i]) into training/validation index lists by is_val, counts the skipped
 * ones and starts the --log-json object (command, names, classes with their counts, skipped files).
 * NULL after printing the error, e.g. a class without a readable training image. */
json_t *train_log_begin(const train_config *c, const model_arch *arch, const char *base_path, const dataset *d,
                        const uint8_t *ok, const uint8_t *is_val, int *train_idx, int *n_train, int *val_idx,
                        int *n_val, int *n_skipped);

/* `--mode full`: everything after the flags were checked (arch resolved, out/name/checkpoint dir set;
 * base_path: the base model's file). Returns the exit status. */
int train_full_main(const train_config *c, const model_arch *arch, const char *base_path);

#endif
