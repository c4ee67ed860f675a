/* The HTTP service on libmicrohttpd: routing, request intake, JSON answers and errors, metrics and
 * access logs. Inference runs on the worker pool; the HTTP side never waits for it (see http.c). */
#ifndef CNN_HTTP_H
#define CNN_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "../core/status.h"
#include "config.h"
#include "log.h"
#include "zoo.h"

typedef struct http_server http_server;

/* Starts the workers (which begin their warm-up) and then listens on cfg->host:cfg->port.
 * default_entry: the zoo entry used when a request names no model (by name, across reloads). The
 * server takes its own reference to z; the config and logger must outlive the server. Fails with a message naming the address when it cannot listen. */
cnn_status http_server_start(http_server **out, const serve_config *cfg, zoo *z, const logger *lg, int default_entry,
                             char *err, size_t err_bytes);

int http_server_port(const http_server *s);

/* Rescans the weights directory (zoo_reload) and installs the new generation: requests already
 * started finish on the old one, which is freed after the last of them. On success *summary (may be
 * NULL) gets {generation, loaded, failed: [{model, why}], reloaded, kept}. CNN_ERR_MISSING (old
 * generation kept) when no model would be left. Thread-safe; reloads run one at a time. */
cnn_status http_server_reload(http_server *s, json_t **summary, char *err, size_t err_bytes);

/* SIGTERM: /readyz turns 503, new requests get 503, the listening socket stops accepting. */
void http_server_begin_drain(http_server *s);

/* Requests received and not yet completed. */
int http_server_in_flight(const http_server *s);

/* Cancels queued jobs (503), waits for running ones, stops the daemon and frees everything. */
void http_server_stop(http_server *s);

/* The API's status and error code for a pipeline_classify failure (415 unsupported_media_type,
 * 422 undecodable_image / image_too_large, 503 busy for out-of-memory, 400 bad_parameter, 500
 * internal); `classify --json` and the KServe routes use the same (server/http_status.c). */
void http_error_of_status(cnn_status st, int *status, const char **code);

#endif
