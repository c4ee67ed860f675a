#include "http_gate.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"
#include "http_parse.h"
#include "timing.h"

#define LINGER_NS 1000000000ull /* after an error answer: read and drop input this long, then close */
#define TAG_LISTEN UINT64_MAX
#define TAG_WAKE (UINT64_MAX - 1)

typedef enum { SLOT_FREE = 0, SLOT_WAITING, SLOT_LINGER } slot_state;

typedef struct {
    int fd;
    slot_state state;
    uint64_t t_ns; /* accepted (WAITING) or answered (LINGER) */
    struct sockaddr_storage addr;
    socklen_t addr_len;
} gate_slot;

struct http_gate {
    http_server *s;
    int epfd, wakefd;
    int listening;              /* the listening socket is in the epoll set */
    atomic_int drain, stop;
    int n_slots, n_used;
    gate_slot *slots;
    char *buf;                  /* HTTP_MAX_HEAD_BYTES: the peeked header block */
    pthread_t thread;
    int started;
};

static void slot_close(http_gate *g, gate_slot *sl)
{
    epoll_ctl(g->epfd, EPOLL_CTL_DEL, sl->fd, NULL);
    close(sl->fd);
    sl->fd = -1;
    sl->state = SLOT_FREE;
    g->n_used--;
}

/* Answers a JSON error on a connection the gate still holds; the connection then lingers. */
static void slot_answer(http_gate *g, gate_slot *sl, int status, const char *reason, const char *code,
                        const char *message, size_t n_consume)
{
    http_server *s = g->s;
    char id[40];
    snprintf(id, sizeof id, "%08x-%08llx", s->id_prefix, (unsigned long long)atomic_fetch_add(&s->next_id, 1));
    json_t *o = json_pack("{s:{s:i,s:s,s:s,s:s}}", "error", "status", status, "code", code, "message", message,
                          "request_id", id);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char head[512];
    int n_head = snprintf(head, sizeof head,
                          "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Request-Id: %s\r\n"
                          "Cache-Control: no-store\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
                          status, reason, id, status == 503 ? "Retry-After: 1\r\n" : "", body ? strlen(body) : 0);
    /* Drop the request bytes we answered so closing does not reset the connection over them. */
    while (n_consume) {
        ssize_t k = recv(sl->fd, g->buf, n_consume < HTTP_MAX_HEAD_BYTES ? n_consume : HTTP_MAX_HEAD_BYTES, MSG_DONTWAIT);
        if (k <= 0) break;
        n_consume -= (size_t)k;
    }
    /* Small answers fit the socket buffer of a fresh connection; a short write just ends it. */
    if (send(sl->fd, head, (size_t)n_head, MSG_NOSIGNAL | MSG_DONTWAIT | (body ? MSG_MORE : 0)) == n_head && body)
        (void)!send(sl->fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
    free(body);
    shutdown(sl->fd, SHUT_WR);
    sl->state = SLOT_LINGER;
    sl->t_ns = timing_now_ns();
    metrics_count_request(s->mt, http_n_routes, METRICS_MODEL_NONE, status);
    log_event(s->lg, LOG_LEVEL_INFO, "access",
              json_pack("{s:s,s:i,s:s,s:s,s:s}", "path", "-", "status", status, "error", code, "request_id", id,
                        "outcome", "gate"));
}

/* The whole header block is here and well-formed: libmicrohttpd takes the connection over. */
static void slot_hand_over(http_gate *g, gate_slot *sl)
{
    http_server *s = g->s;
    if (atomic_load(&s->n_connections) >= s->cfg->max_connections && !http_evict_idle(s)) {
        slot_answer(g, sl, 503, "Service Unavailable", "busy",
                    "all connections are in use (--max-connections); retry shortly", 0);
        return;
    }
    epoll_ctl(g->epfd, EPOLL_CTL_DEL, sl->fd, NULL);
    /* On failure libmicrohttpd closes the socket itself. */
    MHD_add_connection(s->daemon, sl->fd, (const struct sockaddr *)&sl->addr, sl->addr_len);
    sl->fd = -1;
    sl->state = SLOT_FREE;
    g->n_used--;
}

static void slot_readable(http_gate *g, gate_slot *sl)
{
    if (sl->state == SLOT_LINGER) {
        for (;;) {
            ssize_t k = recv(sl->fd, g->buf, HTTP_MAX_HEAD_BYTES, MSG_DONTWAIT);
            if (k > 0) continue;
            if (k < 0 && (errno == EAGAIN || errno == EINTR)) return;
            slot_close(g, sl); /* EOF or error */
            return;
        }
    }
    ssize_t n = recv(sl->fd, g->buf, HTTP_MAX_HEAD_BYTES, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        slot_close(g, sl); /* the client left before sending a request */
        return;
    }
    http_head h;
    if (!http_head_parse(g->buf, (size_t)n, &h)) return;
    if (!h.status) {
        slot_hand_over(g, sl);
        return;
    }
    static const struct { int status; const char *reason; } reasons[] = {
        {400, "Bad Request"}, {414, "URI Too Long"}, {431, "Request Header Fields Too Large"},
        {501, "Not Implemented"}, {505, "HTTP Version Not Supported"},
    };
    const char *reason = "Bad Request";
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == h.status) reason = reasons[i].reason;
    slot_answer(g, sl, h.status, reason, h.code, h.message, h.n_head ? h.n_head : (size_t)n);
}

static gate_slot *slot_free_or_evict(http_gate *g)
{
    gate_slot *oldest = NULL;
    for (int i = 0; i < g->n_slots; i++) {
        gate_slot *sl = &g->slots[i];
        if (sl->state == SLOT_FREE) return sl;
        if (!oldest || sl->t_ns < oldest->t_ns) oldest = sl;
    }
    /* Full: the connection waiting longest (or lingering) makes room; new clients always get in. */
    slot_close(g, oldest);
    return oldest;
}

static void accept_all(http_gate *g)
{
    http_server *s = g->s;
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &addr_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN (backlog empty), or out of descriptors: try again on the next event */
        }
        gate_slot *sl = slot_free_or_evict(g);
        sl->fd = fd;
        sl->state = SLOT_WAITING;
        sl->t_ns = timing_now_ns();
        sl->addr = addr;
        sl->addr_len = addr_len;
        g->n_used++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = (uint64_t)(sl - g->slots)};
        if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            sl->fd = -1;
            sl->state = SLOT_FREE;
            g->n_used--;
            continue;
        }
        slot_readable(g, sl); /* the request often arrives with the handshake */
    }
}

static void sweep_timeouts(http_gate *g)
{
    uint64_t now = timing_now_ns(), header_ns = (uint64_t)g->s->cfg->header_timeout_s * 1000000000ull;
    for (int i = 0; i < g->n_slots; i++) {
        gate_slot *sl = &g->slots[i];
        if (sl->state == SLOT_WAITING && now - sl->t_ns > header_ns) {
            char msg[120];
            snprintf(msg, sizeof msg, "the request header did not arrive within %d s (--header-timeout)",
                     g->s->cfg->header_timeout_s);
            slot_answer(g, sl, 408, "Request Timeout", "request_timeout", msg, 0);
        } else if (sl->state == SLOT_LINGER && now - sl->t_ns > LINGER_NS) {
            slot_close(g, sl);
        }
    }
}

static void *gate_main(void *arg)
{
    http_gate *g = arg;
    struct epoll_event events[64];
    uint64_t last_sweep = timing_now_ns(), last_body_sweep = last_sweep;
    while (!atomic_load(&g->stop)) {
        int n = epoll_wait(g->epfd, events, 64, 100);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == TAG_WAKE) {
                uint64_t v;
                (void)!read(g->wakefd, &v, sizeof v);
            } else if (tag == TAG_LISTEN) {
                accept_all(g);
            } else if (tag < (uint64_t)g->n_slots && g->slots[tag].state != SLOT_FREE) {
                slot_readable(g, &g->slots[tag]);
            }
        }
        if (atomic_load(&g->drain) && g->listening) {
            accept_all(g);
            epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->s->listen_fd, NULL);
            shutdown(g->s->listen_fd, SHUT_RDWR);
            g->listening = 0;
        }
        uint64_t now = timing_now_ns();
        if (now - last_sweep > 100000000ull) {
            sweep_timeouts(g);
            last_sweep = now;
        }
        if (now - last_body_sweep > 1000000000ull) {
            http_sweep_receiving(g->s);
            last_body_sweep = now;
        }
    }
    return NULL;
}

cnn_status http_gate_start(http_gate **out, http_server *s, char *err, size_t err_bytes)
{
    *out = NULL;
    http_gate *g = calloc(1, sizeof *g);
    if (!g) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    g->s = s;
    g->epfd = g->wakefd = -1;
    g->n_slots = s->cfg->max_connections;
    g->slots = calloc((size_t)g->n_slots, sizeof *g->slots);
    g->buf = malloc(HTTP_MAX_HEAD_BYTES);
    cnn_status st;
    if (!g->slots || !g->buf) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < g->n_slots; i++) g->slots[i].fd = -1;
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    g->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    struct epoll_event wev = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
    if (g->epfd < 0 || g->wakefd < 0 || epoll_ctl(g->epfd, EPOLL_CTL_ADD, s->listen_fd, &lev) ||
        epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->wakefd, &wev)) {
        st = cnn_err(err, err_bytes, CNN_ERR_IO, "connection gate: %s", strerror(errno));
        goto fail;
    }
    g->listening = 1;
    if (pthread_create(&g->thread, NULL, gate_main, g)) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "connection gate: cannot start its thread");
        goto fail;
    }
    g->started = 1;
    *out = g;
    return CNN_OK;
fail:
    http_gate_stop(g);
    return st;
}

static void gate_wake(http_gate *g)
{
    uint64_t one = 1;
    (void)!write(g->wakefd, &one, sizeof one);
}

void http_gate_drain(http_gate *g)
{
    if (!g) return;
    atomic_store(&g->drain, 1);
    gate_wake(g);
}

void http_gate_stop(http_gate *g)
{
    if (!g) return;
    atomic_store(&g->stop, 1);
    if (g->started) {
        gate_wake(g);
        pthread_join(g->thread, NULL);
    }
    for (int i = 0; g->slots && i < g->n_slots; i++)
        if (g->slots[i].state != SLOT_FREE) close(g->slots[i].fd);
    if (g->epfd >= 0) close(g->epfd);
    if (g->wakefd >= 0) close(g->wakefd);
    free(g->slots);
    free(g->buf);
    free(g);
}
