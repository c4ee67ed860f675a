/* The connection gate: owns the listening socket and holds each new connection until its first
 * request's header block has arrived whole (looked at with MSG_PEEK, so nothing is consumed), then
 * hands it to libmicrohttpd. Slow or silent clients therefore never take one of libmicrohttpd's
 * --max-connections slots: the gate has its own --max-connections places, cuts a connection whose
 * header is not complete within --header-timeout, and when full drops its oldest waiting connection
 * to make room for a new one. A malformed header block (framing: Content-Length, Transfer-Encoding,
 * Host; limits; HTTP version) is answered here with the JSON error and the connection closed, so
 * those errors never reach libmicrohttpd's own HTML answers (see http_parse.h for the checks). */
#ifndef CNN_HTTP_GATE_H
#define CNN_HTTP_GATE_H

#include <stddef.h>

#include "../core/status.h"

typedef struct http_gate http_gate;
struct http_server;

/* Starts the gate thread on s's listening socket (s->listen_fd, non-blocking) and daemon. */
cnn_status http_gate_start(http_gate **out, struct http_server *s, char *err, size_t err_bytes);

/* Draining: accepts what is already in the kernel's backlog (those still get an answer), then stops
 * accepting and shuts the listening socket down. Waiting connections are still handed over. */
void http_gate_drain(http_gate *g);

/* Stops the thread and closes every connection it still holds. */
void http_gate_stop(http_gate *g);

#endif
