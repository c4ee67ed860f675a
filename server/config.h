/* `cnnserve serve` configuration: defaults, then CNNSERVE_<FLAG> environment variables, then
 * command-line flags (a flag wins over its variable). */
#ifndef CNN_CONFIG_H
#define CNN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "cpus.h"
#include "log.h"

typedef struct {
    char host[256];
    int port;                  /* 0 = any free port (the bound port is logged) */
    char weights_dir[1024];
    char models[1024];         /* comma list; "" = every model whose <name>.safetensors exists */
    int n_workers;             /* inference threads; 0 until parsed = CPUs / threads_per_worker */
    int threads_per_worker;    /* threads of each worker's model contexts (intra-op), 1..MODEL_MAX_THREADS;
                                  0 until parsed = CPUs / n_workers when --workers is given, else 1 */
    int workers_given, threads_given; /* set by flag or environment, not defaults */
    cpus_info cpus;            /* CPUs this process may use (cgroup quota, affinity, online) */
    int queue_depth;           /* hard cap of jobs waiting for a worker; 0 until parsed = --max-connections */
    int64_t max_body_bytes;
    int64_t max_buffered_bytes; /* all request bodies held in memory at once before 503 */
    int64_t max_pixels;
    int timeout_s;             /* per connection: idle timeout and whole-request deadline */
    int header_timeout_s;      /* a new connection's request header must be complete within this */
    int max_queue_wait_ms;     /* admission: refuse (503) when the expected wait for a worker exceeds this; 0 until parsed = --timeout / 2 */
    int drain_timeout_s;       /* SIGTERM: how long in-flight requests may take to finish */
    int max_connections;
    int admin_reload;          /* 1: POST /v1/models/reload is allowed */
    char default_model[64];    /* "" = mobilenet_v3_large when loaded, else the first loaded */
    char reports_dir[1024];    /* served read-only under /reports/ for the web page; "" = none */
    int batch_max;             /* dynamic batching: most requests of one model per batch (1 = off) */
    double batch_delay_ms;     /* longest wait for more requests when fewer than batch_max are queued */
    char batch_models[1024];   /* models batching is on for (comma list, "all", "none") */
    log_format log_format;
    int show_help, show_version;
} serve_config;

/* Defaults; the CPU count (cpus_detect) that --workers and --threads-per-worker follow. */
void config_defaults(serve_config *cfg);

/* Table-driven flags shared by the subcommands: each entry names a flag ("--name VALUE" or
 * "--name=VALUE"; a SWITCH takes no value) and the field of the options struct it sets. */
typedef enum {
    CONFIG_FLAG_STR = 0, /* char[str_bytes] */
    CONFIG_FLAG_INT,     /* int in lo..hi */
    CONFIG_FLAG_INT64,   /* int64_t in lo..hi */
    CONFIG_FLAG_BYTES,   /* int64_t byte count with suffix, in lo..hi */
    CONFIG_FLAG_FRACTION, /* double in [0, 1) */
    CONFIG_FLAG_DOUBLE,  /* finite double in lo..hi */
    CONFIG_FLAG_LOG_FORMAT, /* log_format: text|json */
    CONFIG_FLAG_SWITCH,  /* int set to 1 */
    CONFIG_FLAG_CUSTOM,  /* parse(base, value) */
} config_flag_kind;

typedef struct {
    const char *name; /* without the leading "--" */
    config_flag_kind kind;
    size_t offset;    /* into the options struct */
    size_t str_bytes; /* CONFIG_FLAG_STR: buffer size */
    int64_t lo, hi;   /* CONFIG_FLAG_INT / INT64 / BYTES / DOUBLE: accepted range */
    /* CONFIG_FLAG_CUSTOM: stores value into the struct at base; CNN_ERR_ARG with a message (the
     * caller prefixes the flag's name). */
    cnn_status (*parse)(void *base, const char *value, char *err, size_t err_bytes);
} config_flag;

#define CONFIG_STR(n, type, field) {n, CONFIG_FLAG_STR, offsetof(type, field), sizeof(((type *)0)->field), 0, 0, NULL}
#define CONFIG_INT(n, type, field, lo, hi) {n, CONFIG_FLAG_INT, offsetof(type, field), 0, lo, hi, NULL}
#define CONFIG_INT64(n, type, field, lo, hi) {n, CONFIG_FLAG_INT64, offsetof(type, field), 0, lo, hi, NULL}
#define CONFIG_BYTES(n, type, field, lo, hi) {n, CONFIG_FLAG_BYTES, offsetof(type, field), 0, lo, hi, NULL}
#define CONFIG_FRACTION(n, type, field) {n, CONFIG_FLAG_FRACTION, offsetof(type, field), 0, 0, 0, NULL}
#define CONFIG_DOUBLE(n, type, field, lo, hi) {n, CONFIG_FLAG_DOUBLE, offsetof(type, field), 0, lo, hi, NULL}
#define CONFIG_SWITCH(n, type, field) {n, CONFIG_FLAG_SWITCH, offsetof(type, field), 0, 0, 0, NULL}
#define CONFIG_CUSTOM(n, fn) {n, CONFIG_FLAG_CUSTOM, 0, 0, 0, 0, fn}

/* Applies env_prefix<FLAG> environment variables (upper case, '-' -> '_'; env_prefix NULL: none),
 * then the flags of argv (argv[0] is the first flag) to the struct at base. "-h" means "--help".
 * positional NULL: every argument must be a flag; else (room for argc indices) the arguments that
 * are not flags, anywhere among them and all after "--", are listed there in order, *n_positional
 * of them (`classify photo.jpg --top-k 3` works like `classify --top-k 3 photo.jpg`).
 * CNN_ERR_ARG with a message naming the flag or variable on a bad value or an unknown flag. */
cnn_status config_parse_flags(const config_flag *defs, size_t n_defs, void *base, const char *env_prefix, int argc,
                              char **argv, int *positional, int *n_positional, char *err, size_t err_bytes);

/* Applies the environment then argv (argv[0] is the first flag, not the program name), then fills
 * what was not given: --workers = max(1, CPUs / --threads-per-worker); --threads-per-worker =
 * max(1, CPUs / --workers) when --workers was given, else 1 (so workers x threads = the CPUs).
 * CNN_ERR_ARG with a message naming the flag or variable on a bad value or unknown flag. */
cnn_status config_parse(serve_config *cfg, int argc, char **argv, char *err, size_t err_bytes);

/* Usage text of `cnnserve serve`. */
const char *config_usage(void);

/* Strict parsers shared with the classify CLI: the whole string must be consumed. */
cnn_status config_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* Byte count with optional binary suffix: 512, 64k, 20MiB, 1G. */
cnn_status config_parse_bytes(const char *s, int64_t *out);

#endif
