/* `cnnserve serve` configuration: defaults, then CNNSERVE_<FLAG> environment variables, then
 * command-line flags (a flag wins over its variable). */
#ifndef CNN_CONFIG_H
#define CNN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "log.h"

typedef struct {
    char host[256];
    int port;                  /* 0 = any free port (the bound port is logged) */
    char weights_dir[1024];
    char models[1024];         /* comma list; "" = every model whose <name>.safetensors exists */
    int n_workers;             /* inference threads */
    int threads_per_worker;    /* threads of each worker's model contexts (intra-op), 1..MODEL_MAX_THREADS */
    int queue_depth;           /* jobs waiting for a worker before 503; 0 until parsed = 8 per worker */
    int64_t max_body_bytes;
    int64_t max_buffered_bytes; /* all request bodies held in memory at once before 503 */
    int64_t max_pixels;
    int timeout_s;             /* per connection: idle timeout and whole-request deadline */
    int drain_timeout_s;       /* SIGTERM: how long in-flight requests may take to finish */
    int max_connections;
    int admin_reload;          /* 1: POST /v1/models/reload is allowed */
    char default_model[64];    /* "" = mobilenet_v3_large when loaded, else the first loaded */
    log_format log_format;
    int show_help, show_version;
} serve_config;

void config_defaults(serve_config *cfg);

/* Applies the environment then argv (argv[0] is the first flag, not the program name).
 * CNN_ERR_ARG with a message naming the flag or variable on a bad value or unknown flag. */
cnn_status config_parse(serve_config *cfg, int argc, char **argv, char *err, size_t err_bytes);

/* Usage text of `cnnserve serve`. */
const char *config_usage(void);

/* Strict parsers shared with the classify CLI: the whole string must be consumed. */
cnn_status config_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* Byte count with optional binary suffix: 512, 64k, 20MiB, 1G. */
cnn_status config_parse_bytes(const char *s, int64_t *out);

#endif
