#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../models/model.h"
#include "image.h"

#define STR_FLAG(n, field) CONFIG_STR(n, serve_config, field)
#define INT_FLAG(n, field, lo, hi) CONFIG_INT(n, serve_config, field, lo, hi)
#define INT64_FLAG(n, field, lo, hi) CONFIG_INT64(n, serve_config, field, lo, hi)
#define BYTES_FLAG(n, field, lo, hi) CONFIG_BYTES(n, serve_config, field, lo, hi)

static const config_flag flag_defs[] = {
    STR_FLAG("host", host),
    INT_FLAG("port", port, 0, 65535),
    STR_FLAG("weights-dir", weights_dir),
    STR_FLAG("models", models),
    INT_FLAG("workers", n_workers, 1, 256),
    INT_FLAG("threads-per-worker", threads_per_worker, 1, MODEL_MAX_THREADS),
    INT_FLAG("queue", queue_depth, 1, 1 << 20),
    BYTES_FLAG("max-body-bytes", max_body_bytes, 1, INT64_C(1) << 32),
    BYTES_FLAG("max-buffered-bytes", max_buffered_bytes, 1, INT64_C(1) << 40),
    INT64_FLAG("max-pixels", max_pixels, 1, INT64_C(1) << 40),
    INT_FLAG("timeout", timeout_s, 1, 86400),
    INT_FLAG("header-timeout", header_timeout_s, 1, 86400),
    INT_FLAG("max-queue-wait", max_queue_wait_ms, 1, 86400000),
    INT_FLAG("drain-timeout", drain_timeout_s, 0, 86400),
    INT_FLAG("max-connections", max_connections, 1, 1 << 20),
    STR_FLAG("default-model", default_model),
    INT_FLAG("admin-reload", admin_reload, 0, 1),
    STR_FLAG("reports-dir", reports_dir),
    INT_FLAG("batch-max", batch_max, 1, MODEL_MAX_BATCH),
    CONFIG_DOUBLE("batch-delay-ms", serve_config, batch_delay_ms, 0, 1000),
    STR_FLAG("batch-models", batch_models),
    {"log-format", CONFIG_FLAG_LOG_FORMAT, offsetof(serve_config, log_format), 0, 0, 0, NULL},
    CONFIG_SWITCH("help", serve_config, show_help),
    CONFIG_SWITCH("version", serve_config, show_version),
};
#define N_FLAGS (sizeof(flag_defs) / sizeof(flag_defs[0]))

/* Dynamic batching defaults, from the measurements in the README (Performance: dynamic batching). */
#define CONFIG_BATCH_MAX 8
#define CONFIG_BATCH_MAX_TEXT "8"
#define CONFIG_BATCH_DELAY_MS 0.0
#define CONFIG_BATCH_DELAY_TEXT "0"
#define CONFIG_BATCH_MODELS "alexnet"

static const char usage_text[] =
    "usage: cnnserve serve [flags]\n"
    "\n"
    "Serves POST /v1/classify with every available model resident. Each flag can also be set by the\n"
    "environment variable CNNSERVE_<FLAG> (upper case, '-' -> '_'); the flag wins.\n"
    "\n"
    "  --host ADDR              listen address (default 0.0.0.0)\n"
    "  --port N                 listen port (default 8080; 0 = any free port, logged at start)\n"
    "  --weights-dir DIR        where <model>.safetensors files live (default ./weights)\n"
    "  --models LIST            comma list of models to load: architecture names/aliases and fine-tuned\n"
    "                           file stems (default: every *.safetensors of --weights-dir)\n"
    "  --workers N              inference workers, one request each at a time (default: the CPUs this process\n"
    "                           may use / --threads-per-worker; the CPUs follow the cgroup CPU quota (cpu.max,\n"
    "                           or v1 cpu.cfs_quota_us) and the affinity mask, logged at start)\n"
    "  --threads-per-worker N   threads of each worker's inference, 1..64 (same answers at any N; default 1, or\n"
    "                           the CPUs / --workers when --workers is given): more threads per worker lower\n"
    "                           latency at light load, 1 gives the most req/s\n"
    "  --queue N                hard cap of requests waiting for a worker (default: --max-connections)\n"
    "  --max-queue-wait MS      refuse a request (503, before reading its body) when its expected wait for a\n"
    "                           worker (queued work x the model's measured time / workers) exceeds MS\n"
    "                           (default: half of --timeout)\n"
    "  --max-body-bytes N       largest request body, suffixes k/M/G (default 20MiB)\n"
    "  --max-buffered-bytes N   all request bodies held at once before 503 (default 256MiB)\n"
    "  --max-pixels N           largest decoded image, width*height (default " IMAGE_DEFAULT_MAX_PIXELS_TEXT ")\n"
    "  --timeout S              per-connection idle timeout and request deadline (default 30)\n"
    "  --header-timeout S       a new connection's request header must arrive within S (default 10)\n"
    "  --drain-timeout S        on SIGTERM, time given to in-flight requests (default 30)\n"
    "  --max-connections N      concurrent connections (default 512)\n"
    "  --default-model NAME     model used when a request names none (default mobilenet_v3_large when\n"
    "                           loaded, else the first loaded model in registry order)\n"
    "  --admin-reload 0|1       1 allows POST /v1/models/reload (default 0: 403); SIGHUP always reloads\n"
    "  --reports-dir DIR        eval/paper reports (JSON, REPORT.md, PNG/SVG figures) the web page at /\n"
    "                           links, served read-only under /reports/ (default: none)\n"
    "  --batch-max N            dynamic batching: up to N queued requests for one model run as one batch\n"
    "                           (same answers as alone; 1..64, default " CONFIG_BATCH_MAX_TEXT "; 1 = off)\n"
    "  --batch-delay-ms MS      wait up to MS for more requests when fewer than --batch-max are queued\n"
    "                           (default " CONFIG_BATCH_DELAY_TEXT ")\n"
    "  --batch-models LIST      models batching is on for: served or architecture names, 'all' or 'none'\n"
    "                           (default " CONFIG_BATCH_MODELS "; where measured to win, see README)\n"
    "  --log-format text|json   log line format (default text)\n"
    "  --help, --version\n";

const char *config_usage(void) { return usage_text; }

void config_defaults(serve_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->host, sizeof cfg->host, "0.0.0.0");
    cfg->port = 8080;
    snprintf(cfg->weights_dir, sizeof cfg->weights_dir, "./weights");
    cpus_detect(&cfg->cpus);
    cfg->max_body_bytes = INT64_C(20) << 20;
    cfg->max_buffered_bytes = INT64_C(256) << 20;
    cfg->max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    cfg->timeout_s = 30;
    cfg->header_timeout_s = 10;
    cfg->drain_timeout_s = 30;
    cfg->max_connections = 512;
    cfg->log_format = LOG_FORMAT_TEXT;
    cfg->batch_max = CONFIG_BATCH_MAX;
    cfg->batch_delay_ms = CONFIG_BATCH_DELAY_MS;
    snprintf(cfg->batch_models, sizeof cfg->batch_models, "%s", CONFIG_BATCH_MODELS);
}

cnn_status config_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s)) return CNN_ERR_ARG;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return CNN_ERR_ARG;
    *out = v;
    return CNN_OK;
}

cnn_status config_parse_bytes(const char *s, int64_t *out)
{
    if (!s || !*s || !isdigit((unsigned char)*s)) return CNN_ERR_ARG;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || v < 0) return CNN_ERR_ARG;
    static const struct { const char *suffix; int shift; } suffixes[] = {
        {"", 0}, {"b", 0}, {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20}, {"mb", 20}, {"mib", 20},
        {"g", 30}, {"gb", 30}, {"gib", 30},
    };
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        if (strcasecmp(end, suffixes[i].suffix)) continue;
        if (v > (INT64_MAX >> suffixes[i].shift)) return CNN_ERR_ARG;
        *out = (int64_t)v << suffixes[i].shift;
        return CNN_OK;
    }
    return CNN_ERR_ARG;
}

/* Stores value into the field of flag f of the struct at base; `origin` names the flag or variable
 * for messages. */
static cnn_status apply_flag(void *base_ptr, const config_flag *f, const char *value, const char *origin,
                             char *err, size_t err_bytes)
{
    char *base = (char *)base_ptr + f->offset;
    int64_t v;
    switch (f->kind) {
    case CONFIG_FLAG_STR:
        if (strlen(value) >= f->str_bytes)
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s: value longer than %zu bytes", origin,
                           f->str_bytes - 1);
        memcpy(base, value, strlen(value) + 1);
        return CNN_OK;
    case CONFIG_FLAG_INT:
    case CONFIG_FLAG_INT64:
        if (config_parse_int(value, f->lo, f->hi, &v) != CNN_OK)
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s: expected an integer in %lld..%lld, got '%s'",
                           origin, (long long)f->lo, (long long)f->hi, value);
        if (f->kind == CONFIG_FLAG_INT64) *(int64_t *)(void *)base = v;
        else *(int *)(void *)base = (int)v;
        return CNN_OK;
    case CONFIG_FLAG_BYTES:
        if (config_parse_bytes(value, &v) != CNN_OK || v < f->lo || v > f->hi)
            return cnn_err(err, err_bytes, CNN_ERR_ARG,
                           "%s: expected a byte count (e.g. 1048576, 512k, 20MiB) in %lld..%lld, got '%s'",
                           origin, (long long)f->lo, (long long)f->hi, value);
        *(int64_t *)(void *)base = v;
        return CNN_OK;
    case CONFIG_FLAG_FRACTION:
    case CONFIG_FLAG_DOUBLE: {
        char *end;
        errno = 0;
        double d = *value && !isspace((unsigned char)*value) ? strtod(value, &end) : NAN;
        if (f->kind == CONFIG_FLAG_FRACTION && (isnan(d) || errno || *end || d < 0.0 || d >= 1.0))
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s: expected a number in [0, 1), got '%s'", origin, value);
        if (f->kind == CONFIG_FLAG_DOUBLE &&
            (isnan(d) || errno || *end || d < (double)f->lo || d > (double)f->hi))
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s: expected a number in %lld..%lld, got '%s'", origin,
                           (long long)f->lo, (long long)f->hi, value);
        *(double *)(void *)base = d;
        return CNN_OK;
    }
    case CONFIG_FLAG_LOG_FORMAT:
        if (!strcmp(value, "text")) *(log_format *)(void *)base = LOG_FORMAT_TEXT;
        else if (!strcmp(value, "json")) *(log_format *)(void *)base = LOG_FORMAT_JSON;
        else return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s: expected text or json, got '%s'", origin, value);
        return CNN_OK;
    case CONFIG_FLAG_SWITCH:
        *(int *)(void *)base = 1;
        return CNN_OK;
    case CONFIG_FLAG_CUSTOM: {
        char why[512];
        cnn_status st = f->parse(base_ptr, value, why, sizeof why);
        return st == CNN_OK ? CNN_OK : cnn_err(err, err_bytes, st, "%s: %s", origin, why);
    }
    }
    return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s: unknown flag kind", origin);
}

static void env_name(const char *prefix, const config_flag *f, char *buf, size_t buf_bytes)
{
    size_t n = (size_t)snprintf(buf, buf_bytes, "%s", prefix);
    for (const char *p = f->name; *p && n + 1 < buf_bytes; p++)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

cnn_status config_parse_flags(const config_flag *defs, size_t n_defs, void *base, const char *env_prefix, int argc,
                              char **argv, int *positional, int *n_positional, char *err, size_t err_bytes)
{
    cnn_status st;
    for (size_t i = 0; env_prefix && i < n_defs; i++) {
        if (defs[i].kind == CONFIG_FLAG_SWITCH) continue;
        char name[64];
        env_name(env_prefix, &defs[i], name, sizeof name);
        const char *value = getenv(name);
        if (value && (st = apply_flag(base, &defs[i], value, name, err, err_bytes)) != CNN_OK) return st;
    }
    if (n_positional) *n_positional = 0;
    for (int a = 0; a < argc; a++) {
        const char *arg = !strcmp(argv[a], "-h") ? "--help" : argv[a];
        if (positional && !strcmp(arg, "--")) {
            while (++a < argc) positional[(*n_positional)++] = a;
            break;
        }
        if (positional && strncmp(arg, "--", 2)) {
            positional[(*n_positional)++] = a;
            continue;
        }
        if (strncmp(arg, "--", 2))
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "unexpected argument '%s' (see --help)", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const config_flag *f = NULL;
        for (size_t i = 0; i < n_defs; i++)
            if (strlen(defs[i].name) == name_len && !strncmp(defs[i].name, name, name_len)) f = &defs[i];
        if (!f) return cnn_err(err, err_bytes, CNN_ERR_ARG, "unknown flag '%.*s' (see --help)", (int)(name_len + 2), arg);
        char origin[80];
        snprintf(origin, sizeof origin, "--%s", f->name);
        const char *value = eq ? eq + 1 : NULL;
        if (f->kind == CONFIG_FLAG_SWITCH) {
            if (value) return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s takes no value", origin);
            value = "";
        } else if (!value) {
            if (a + 1 >= argc) return cnn_err(err, err_bytes, CNN_ERR_ARG, "%s needs a value", origin);
            value = argv[++a];
        }
        if ((st = apply_flag(base, f, value, origin, err, err_bytes)) != CNN_OK) return st;
    }
    return CNN_OK;
}

cnn_status config_parse(serve_config *cfg, int argc, char **argv, char *err, size_t err_bytes)
{
    cnn_status st = config_parse_flags(flag_defs, N_FLAGS, cfg, "CNNSERVE_", argc, argv, NULL, NULL, err, err_bytes);
    if (st != CNN_OK) return st;
    cfg->workers_given = cfg->n_workers > 0;
    cfg->threads_given = cfg->threads_per_worker > 0;
    int n_cpus = cfg->cpus.n_cpus > 0 ? cfg->cpus.n_cpus : 1;
    if (!cfg->threads_given) {
        int t = cfg->workers_given ? n_cpus / cfg->n_workers : 1;
        cfg->threads_per_worker = t < 1 ? 1 : t > MODEL_MAX_THREADS ? MODEL_MAX_THREADS : t;
    }
    if (!cfg->workers_given) {
        int w = n_cpus / cfg->threads_per_worker;
        cfg->n_workers = w < 1 ? 1 : w > 256 ? 256 : w;
    }
    if (cfg->queue_depth == 0) cfg->queue_depth = cfg->max_connections;
    /* Half the request deadline: what is admitted can still finish before --timeout. */
    if (cfg->max_queue_wait_ms == 0) cfg->max_queue_wait_ms = cfg->timeout_s * 500;
    if (cfg->max_buffered_bytes < cfg->max_body_bytes) cfg->max_buffered_bytes = cfg->max_body_bytes;
    return CNN_OK;
}
