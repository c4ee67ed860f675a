/* `cnnserve serve`: load every model, start the HTTP service, wait for SIGTERM/SIGINT, drain, exit 0. */
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "timing.h"
#include "version.h"
#include "zoo.h"

/* Entry index of the default model: --default-model if given (must be loaded), else
 * mobilenet_v3_large when loaded, else the first loaded model. -1 with a message on error. */
static int pick_default_model(const zoo *z, const char *name, char *err, size_t err_bytes)
{
    char loaded[256];
    zoo_loaded_names(z, loaded, sizeof loaded);
    if (name[0]) {
        int e = zoo_find(z, name);
        if (e < 0 || !z->entries[e].m) {
            snprintf(err, err_bytes, "--default-model '%s' is not a loaded model (loaded: %s)", name, loaded);
            return -1;
        }
        return e;
    }
    return zoo_default_entry(z);
}

/* SIGTERM/SIGINT received so far. The only file-scope mutable state of the program: a signal
 * handler may portably communicate only through a volatile sig_atomic_t object. A handler (rather
 * than blocking the signals and sigwait) is needed because library threads started before main
 * (OpenBLAS's pool, sanitizer runtimes) do not block them, and the default action would kill us. */
static volatile sig_atomic_t n_stop_signals;
static volatile sig_atomic_t last_stop_signal;
static volatile sig_atomic_t n_reload_signals; /* SIGHUP: rescan the weights directory */

static void on_stop_signal(int sig)
{
    last_stop_signal = sig;
    n_stop_signals = n_stop_signals + 1;
}

static void on_reload_signal(int sig)
{
    (void)sig;
    n_reload_signals = n_reload_signals + 1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal cuts it short, which is what we want */
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_reload_signal;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a write to a closed socket must not kill us */
}

/* The "starting" line, the CPU count the defaults follow and where it came from, and a warning when
 * workers x threads exceed it. */
static void log_start(const logger *lg, const serve_config *cfg)
{
    log_event(lg, LOG_LEVEL_INFO, "starting",
              json_pack("{s:s,s:s,s:s}", "version", CNNSERVE_VERSION, "weights_dir", cfg->weights_dir, "models",
                        cfg->models[0] ? cfg->models : "(every file found)"));
    const cpus_info *c = &cfg->cpus;
    json_t *f = json_pack("{s:i,s:s,s:i,s:i}", "cpus", c->n_cpus, "source", cpus_source_name(c->source), "online",
                          c->n_online, "affinity", c->n_affinity);
    if (f && c->quota_cpus > 0.0) { /* no quota: no quota fields */
        json_object_set_new(f, "quota_cpus", json_real(c->quota_cpus));
        json_object_set_new(f, "quota_file", json_string(c->quota_file));
    }
    if (f) {
        json_object_set_new(f, "workers", json_integer(cfg->n_workers));
        json_object_set_new(f, "workers_from", json_string(cfg->workers_given ? "flag" : "cpus"));
        json_object_set_new(f, "threads_per_worker", json_integer(cfg->threads_per_worker));
        json_object_set_new(f, "threads_from", json_string(cfg->threads_given ? "flag" : cfg->workers_given ? "cpus" : "default"));
    }
    log_event(lg, LOG_LEVEL_INFO, "cpus", f);
    if ((long)cfg->n_workers * cfg->threads_per_worker > c->n_cpus)
        log_event(lg, LOG_LEVEL_WARN, "oversubscribed",
                  json_pack("{s:i,s:i,s:i,s:s}", "workers", cfg->n_workers, "threads_per_worker",
                            cfg->threads_per_worker, "cpus", c->n_cpus, "msg",
                            "workers x threads-per-worker exceeds the CPUs this process may use: under load, "
                            "threads wait for CPUs and latency rises"));
}

/* --reports-dir: 0, or 2 after a message when it names something that is not a directory. */
static int check_reports_dir(const logger *lg, const serve_config *cfg)
{
    if (!cfg->reports_dir[0]) return 0;
    /* A directory that does not exist yet (make paper has not run) is listed once it does. */
    struct stat st;
    int exists = stat(cfg->reports_dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "cnnserve serve: --reports-dir '%s' is not a directory\n", cfg->reports_dir);
        return 2;
    }
    log_event(lg, exists ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "reports_dir",
              json_pack("{s:s,s:b}", "dir", cfg->reports_dir, "exists", exists));
    return 0;
}

/* Loads the models and starts the HTTP service on them; -1 after a "fatal" log line. */
static int start_service(const serve_config *cfg, const logger *lg, zoo **z, http_server **srv, int *default_entry)
{
    char err[1024];
    if (zoo_load(z, cfg->weights_dir, cfg->models, lg, err, sizeof err) != CNN_OK) {
        log_event(lg, LOG_LEVEL_ERROR, "fatal", json_pack("{s:s}", "msg", err));
        return -1;
    }
    zoo_set_workers(*z, cfg->n_workers, cfg->threads_per_worker);
    *default_entry = pick_default_model(*z, cfg->default_model, err, sizeof err);
    if (*default_entry < 0 || http_server_start(srv, cfg, *z, lg, *default_entry, err, sizeof err) != CNN_OK) {
        log_event(lg, LOG_LEVEL_ERROR, "fatal", json_pack("{s:s}", "msg", err));
        zoo_release(*z);
        return -1;
    }
    return 0;
}

/* Serves until SIGTERM/SIGINT: logs "ready" once every model of the first generation has warmed up,
 * and reloads the models on SIGHUP. Our reference to the first generation (*z) is dropped once it is
 * ready or reloaded away: the server holds its own. */
static void run_until_stop_signal(const logger *lg, zoo **z, int default_entry, http_server *srv)
{
    int logged_ready = 0;
    uint64_t t_start = timing_now_ns();
    int n_reloads = 0;
    char err[1024];
    while (!n_stop_signals) {
        sleep_ms(50);
        if (!logged_ready && zoo_all_ready(*z)) {
            logged_ready = 1;
            log_event(lg, LOG_LEVEL_INFO, "ready",
                      json_pack("{s:s,s:f}", "default_model", (*z)->entries[default_entry].name, "warmup_ms",
                                timing_ms(t_start, timing_now_ns())));
        }
        if (*z && (logged_ready || n_reload_signals != n_reloads)) {
            zoo_release(*z);
            *z = NULL;
            logged_ready = 1;
        }
        if (n_reload_signals != n_reloads) {
            n_reloads = n_reload_signals;
            log_event(lg, LOG_LEVEL_INFO, "reloading", json_pack("{s:s}", "signal", "SIGHUP"));
            http_server_reload(srv, NULL, err, sizeof err); /* logs its outcome */
        }
    }
}

/* Stops accepting, gives in-flight requests the drain timeout (a second signal cuts it short),
 * then stops the service. */
static void drain_and_stop(const serve_config *cfg, const logger *lg, http_server *srv)
{
    log_event(lg, LOG_LEVEL_INFO, "draining",
              json_pack("{s:s,s:i,s:i}", "signal", last_stop_signal == SIGINT ? "SIGINT" : "SIGTERM", "in_flight",
                        http_server_in_flight(srv), "drain_timeout_s", cfg->drain_timeout_s));
    http_server_begin_drain(srv);
    uint64_t deadline = timing_now_ns() + (uint64_t)cfg->drain_timeout_s * 1000000000u;
    int forced = 0;
    while (http_server_in_flight(srv) > 0 && timing_now_ns() < deadline) {
        if (n_stop_signals > 1) {
            forced = 1; /* a second signal: stop now */
            break;
        }
        sleep_ms(10);
    }
    int left = http_server_in_flight(srv);
    if (left)
        log_event(lg, LOG_LEVEL_WARN, "drain_incomplete",
                  json_pack("{s:i,s:s}", "in_flight", left, "why", forced ? "second signal" : "drain timeout"));
    http_server_stop(srv);
}

int serve_main(int argc, char **argv)
{
    serve_config cfg;
    char err[1024];
    config_defaults(&cfg);
    if (config_parse(&cfg, argc, argv, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve serve: %s\n", err);
        return 2;
    }
    if (cfg.show_help) {
        fputs(config_usage(), stdout);
        return 0;
    }
    if (cfg.show_version) {
        printf("cnnserve %s\n", CNNSERVE_VERSION);
        return 0;
    }
    logger lg;
    log_init(&lg, cfg.log_format);
    install_signal_handlers();
    /* Concurrency comes from the worker pool and, within one inference, from the model contexts'
     * own threads (--threads-per-worker), so OpenBLAS must stay single-threaded inside each call:
     * otherwise its threads would multiply ours, oversubscribe the cores and add thread hand-offs
     * to every GEMM. */
    openblas_set_num_threads(1);
    log_start(&lg, &cfg);
    if (check_reports_dir(&lg, &cfg)) return 2;

    zoo *z;
    http_server *srv;
    int default_entry;
    if (start_service(&cfg, &lg, &z, &srv, &default_entry)) return 1;
    run_until_stop_signal(&lg, &z, default_entry, srv);
    drain_and_stop(&cfg, &lg, srv);
    zoo_release(z);
    log_event(&lg, LOG_LEVEL_INFO, "stopped", NULL);
    return 0;
}
