/*
 * loopback_server.c: see loopback_server.h for what it serves and records.
 *
 * Threads: one accept thread (poll on the listening socket and a wake-up pipe) and one thread
 * per connection. Shutdown: lb_stop sets `stopping`, wakes the accept thread through the pipe
 * and /slow sleepers through a condition variable, shutdown()s every client socket so blocked
 * recv/send calls return, then joins everything. A connection thread closes its own socket
 * under the mutex and marks it -1, so lb_stop never shuts down a recycled descriptor.
 */
#define _POSIX_C_SOURCE 200809L

#include "loopback_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOW_MAX_MS 60000
#define BIG_MAX ((unsigned long long)1 << 32)
#define CHUNK_LINE_MAX 1024

typedef struct lb_conn {
    lb_server *srv;
    int index;
    int fd;          /* -1 once the connection thread closed it; guarded by srv->mu */
    int peer_port;
    int requests;    /* guarded by srv->mu */
    int finished;    /* thread is about to return; guarded by srv->mu */
    int joined;      /* only touched by the accept thread, then by lb_stop */
    pthread_t thread;
} lb_conn;

struct lb_server {
    int listen_fd;
    int wake_pipe[2];
    int port;
    pthread_t accept_thread;

    pthread_mutex_t mu;
    pthread_cond_t stop_cond;  /* broadcast when stopping is set (wakes /slow) */
    int stopping;
    lb_conn **conns;           /* pointers, so a connection's address survives a realloc */
    int nconns, cap_conns;
    lb_request_record *reqs;
    int nreqs, cap_reqs;
};

/* ------------------------------------------------------------------------------------------
 * Buffered connection input: request heads are parsed from `buf`, and body bytes that arrived
 * together with the head are consumed from it before reading the socket again.
 * ---------------------------------------------------------------------------------------- */

typedef struct conn_io {
    int fd;
    char *buf;      /* LB_MAX_HEAD bytes */
    size_t start;   /* first unconsumed byte */
    size_t end;     /* one past the last received byte */
} conn_io;

/* Receives more bytes after moving the unconsumed ones to the front.
 * Returns >0 bytes added, 0 on EOF or error, -1 if the buffer is full. */
static ssize_t io_fill(conn_io *io) {
    if (io->start > 0) {
        memmove(io->buf, io->buf + io->start, io->end - io->start);
        io->end -= io->start;
        io->start = 0;
    }
    if (io->end == LB_MAX_HEAD) return -1;
    for (;;) {
        ssize_t n = recv(io->fd, io->buf + io->end, LB_MAX_HEAD - io->end, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        io->end += (size_t)n;
        return n;
    }
}

/* Consumes exactly n bytes, copying them to dst unless dst is NULL. Returns 0 or -1 (EOF). */
static int io_read_exact(conn_io *io, char *dst, size_t n) {
    while (n > 0) {
        if (io->start == io->end) {
            io->start = io->end = 0;
            if (io_fill(io) <= 0) return -1;
        }
        size_t avail = io->end - io->start;
        size_t take = avail < n ? avail : n;
        if (dst) {
            memcpy(dst, io->buf + io->start, take);
            dst += take;
        }
        io->start += take;
        n -= take;
    }
    return 0;
}

/* Reads one CRLF-terminated line (without the CRLF) into out (cap bytes, NUL-terminated).
 * Returns 0, or -1 on EOF or a line longer than cap - 1. */
static int io_read_line(conn_io *io, char *out, size_t cap) {
    size_t scanned = 0;
    for (;;) {
        char *base = io->buf + io->start;
        size_t avail = io->end - io->start;
        for (; scanned + 1 < avail; scanned++) {
            if (base[scanned] == '\r' && base[scanned + 1] == '\n') {
                if (scanned >= cap) return -1;
                memcpy(out, base, scanned);
                out[scanned] = '\0';
                io->start += scanned + 2;
                return 0;
            }
        }
        if (avail >= cap + 1) return -1; /* cannot fit even before the CRLF arrives */
        if (io_fill(io) <= 0) return -1;
    }
}

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static int send_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        /* MSG_NOSIGNAL: a client that went away must not kill the process with SIGPIPE. */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_str(int fd, const char *s) { return send_all(fd, s, strlen(s)); }

static void copy_trunc(char *dst, size_t cap, const char *src, size_t len) {
    if (len >= cap) len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Does the comma-separated list contain `token` (case-insensitive)? */
static int has_token(const char *list, const char *token) {
    size_t tlen = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0) return 1;
    }
    return 0;
}

/* The value of query parameter `name` as an unsigned number, or `dflt` if absent or bad. */
static unsigned long long query_num(const char *query, const char *name,
                                    unsigned long long dflt) {
    size_t nlen = strlen(name);
    const char *p = query;
    while (p && *p) {
        if (strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            if (*v < '0' || *v > '9') return dflt;
            char *endp;
            errno = 0;
            unsigned long long n = strtoull(v, &endp, 10);
            if (errno != 0 || (*endp != '\0' && *endp != '&')) return dflt;
            return n;
        }
        p = strchr(p, '&');
        if (p) p++;
    }
    return dflt;
}

static int is_tchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* ------------------------------------------------------------------------------------------
 * Request head parsing
 * ---------------------------------------------------------------------------------------- */

typedef struct parsed_head {
    lb_request_record rec;
    char query[512];
    int http10;
    int chunked;
    int has_length;
    unsigned long long content_length;
    int keep_alive_token;   /* "Connection: keep-alive" (matters for HTTP/1.0) */
} parsed_head;

/* Parses a NUL-terminated head (ending with the blank line). Returns 0, or -1 if malformed. */
static int parse_head(char *head, parsed_head *ph) {
    memset(ph, 0, sizeof *ph);
    char *line_end = strstr(head, "\r\n");
    if (!line_end) return -1;
    *line_end = '\0';

    /* Request line: method SP target SP version, exactly single spaces. */
    char *sp1 = strchr(head, ' ');
    if (!sp1 || sp1 == head) return -1;
    char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || sp2 == sp1 + 1 || strchr(sp2 + 1, ' ')) return -1;
    for (char *c = head; c < sp1; c++)
        if (!is_tchar(*c)) return -1;
    if ((size_t)(sp1 - head) >= sizeof ph->rec.method) return -1;
    copy_trunc(ph->rec.method, sizeof ph->rec.method, head, (size_t)(sp1 - head));
    const char *target = sp1 + 1;
    size_t target_len = (size_t)(sp2 - target);
    for (size_t i = 0; i < target_len; i++)
        if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f) return -1;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0) {
        ph->http10 = 0;
    } else if (strcmp(sp2 + 1, "HTTP/1.0") == 0) {
        ph->http10 = 1;
    } else {
        return -1;
    }
    copy_trunc(ph->rec.target, sizeof ph->rec.target, target, target_len);
    const char *q = memchr(target, '?', target_len);
    size_t path_len = q ? (size_t)(q - target) : target_len;
    copy_trunc(ph->rec.path, sizeof ph->rec.path, target, path_len);
    if (q) copy_trunc(ph->query, sizeof ph->query, q + 1, target_len - path_len - 1);

    /* Header fields until the empty line. */
    char *line = line_end + 2;
    for (;;) {
        line_end = strstr(line, "\r\n");
        if (!line_end) return -1;
        *line_end = '\0';
        if (*line == '\0') break;
        if (*line == ' ' || *line == '\t') return -1; /* obsolete line folding: refuse */
        char *colon = strchr(line, ':');
        if (!colon || colon == line) return -1;
        for (char *c = line; c < colon; c++)
            if (!is_tchar(*c)) return -1;
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        char *vend = value + strlen(value);
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t')) *--vend = '\0';

        if (strcasecmp(line, "Content-Length") == 0) {
            if (*value == '\0') return -1;
            for (char *c = value; *c; c++)
                if (*c < '0' || *c > '9') return -1;
            errno = 0;
            unsigned long long n = strtoull(value, NULL, 10);
            if (errno != 0) return -1;
            if (ph->has_length && n != ph->content_length) return -1;
            ph->has_length = 1;
            ph->content_length = n;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            /* Only "chunked" as the final coding frames the body; anything else we refuse. */
            if (!has_token(value, "chunked")) return -1;
            ph->chunked = 1;
        } else if (strcasecmp(line, "Connection") == 0) {
            lb_request_record *r = &ph->rec;
            size_t used = strlen(r->connection);
            if (r->has_connection && used + 2 < sizeof r->connection) {
                strcat(r->connection, ", ");
                used += 2;
            }
            if (used < sizeof r->connection)
                copy_trunc(r->connection + used, sizeof r->connection - used, value,
                           strlen(value));
            r->has_connection = 1;
            if (has_token(value, "keep-alive")) ph->keep_alive_token = 1;
        }
        line = line_end + 2;
    }
    if (ph->chunked && ph->has_length) return -1; /* ambiguous framing (smuggling vector) */
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Request bodies
 * ---------------------------------------------------------------------------------------- */

typedef struct body_buf {
    char *data;           /* NULL when discarding */
    size_t len, cap;
    int keep;             /* store (for /echo) or discard */
    int too_big;
} body_buf;

static int body_append(conn_io *io, body_buf *b, size_t n) {
    if (!b->keep || b->too_big) return io_read_exact(io, NULL, n);
    if (b->len + n > LB_MAX_ECHO) {
        b->too_big = 1;
        return io_read_exact(io, NULL, n);
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return -1;
        b->data = p;
        b->cap = cap;
    }
    if (io_read_exact(io, b->data + b->len, n) != 0) return -1;
    b->len += n;
    return 0;
}

/* Reads the body framed by Content-Length or chunked coding. Returns 0, or -1 on EOF/error
 * (then the connection is closed without a response). */
static int read_body(conn_io *io, const parsed_head *ph, body_buf *b, long long *total) {
    *total = 0;
    if (ph->chunked) {
        char line[CHUNK_LINE_MAX];
        for (;;) {
            if (io_read_line(io, line, sizeof line) != 0) return -1;
            char *endp;
            errno = 0;
            unsigned long long size = strtoull(line, &endp, 16);
            if (endp == line || errno != 0 || (*endp != '\0' && *endp != ';' && *endp != ' '))
                return -1;
            if (size == 0) break;
            if (size > ((unsigned long long)1 << 40)) return -1;
            if (body_append(io, b, (size_t)size) != 0) return -1;
            *total += (long long)size;
            char crlf[2];
            if (io_read_exact(io, crlf, 2) != 0 || crlf[0] != '\r' || crlf[1] != '\n') return -1;
        }
        /* Trailer fields, until the empty line; bounded by the head limit. */
        for (size_t seen = 0;; ) {
            if (io_read_line(io, line, sizeof line) != 0) return -1;
            if (line[0] == '\0') break;
            seen += strlen(line) + 2;
            if (seen > LB_MAX_HEAD) return -1;
        }
        return 0;
    }
    if (ph->has_length) {
        unsigned long long left = ph->content_length;
        while (left > 0) {
            size_t step = left > 65536 ? 65536 : (size_t)left;
            if (body_append(io, b, step) != 0) return -1;
            left -= step;
        }
        *total = (long long)ph->content_length;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ---------------------------------------------------------------------------------------- */

/* Sends a complete response with a Content-Length body (omitted for HEAD). */
static int respond(int fd, const parsed_head *ph, int status, const char *reason,
                   const char *ctype, const char *body, size_t len, int closing) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: lb-loopback\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "\r\n",
                     status, reason, ctype, len, closing ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    if (send_all(fd, head, (size_t)n) != 0) return -1;
    if (strcmp(ph->rec.method, "HEAD") == 0) return 0;
    return len ? send_all(fd, body, len) : 0;
}

static int respond_big(int fd, const parsed_head *ph, unsigned long long n, int closing) {
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nServer: lb-loopback\r\n"
                      "Content-Type: application/octet-stream\r\nContent-Length: %llu\r\n%s\r\n",
                      n, closing ? "Connection: close\r\n" : "");
    if (hn < 0 || (size_t)hn >= sizeof head) return -1;
    if (send_all(fd, head, (size_t)hn) != 0) return -1;
    if (strcmp(ph->rec.method, "HEAD") == 0) return 0;
    /* A block whose length is a multiple of 26, so every block starts with 'a'. */
    enum { BLOCK = 26 * 2048 };
    char *block = malloc(BLOCK);
    if (!block) return -1;
    for (size_t i = 0; i < BLOCK; i++) block[i] = lb_big_byte(i);
    int rc = 0;
    while (n > 0 && rc == 0) {
        size_t step = n > BLOCK ? BLOCK : (size_t)n;
        rc = send_all(fd, block, step);
        n -= step;
    }
    free(block);
    return rc;
}

static int respond_chunked(int fd, const parsed_head *ph, int closing) {
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nServer: lb-loopback\r\nContent-Type: text/plain\r\n"
                      "Transfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n%s\r\n",
                      closing ? "Connection: close\r\n" : "");
    if (hn < 0 || (size_t)hn >= sizeof head) return -1;
    if (send_all(fd, head, (size_t)hn) != 0) return -1;
    if (strcmp(ph->rec.method, "HEAD") == 0) return 0;
    /* Uneven pieces, sent one send() each so they arrive as separate segments; one size in
     * upper-case hex and one with a chunk extension, both of which HTTP/1.1 allows. */
    const char *body = LB_CHUNKED_BODY;
    const size_t pieces[] = {7, 8, 6, 1};
    size_t off = 0, total = strlen(body);
    for (size_t i = 0; i <= sizeof pieces / sizeof pieces[0]; i++) {
        size_t len = i < sizeof pieces / sizeof pieces[0] ? pieces[i] : total - off;
        char line[64];
        int ln = snprintf(line, sizeof line, i == 2 ? "%zx;note=x\r\n" : "%zX\r\n", len);
        if (send_all(fd, line, (size_t)ln) != 0 || send_all(fd, body + off, len) != 0 ||
            send_str(fd, "\r\n") != 0)
            return -1;
        off += len;
    }
    return send_str(fd, "0\r\nX-Trailer: done\r\n\r\n");
}

/* Sleeps up to ms, returning early when the server stops. */
static void slow_wait(lb_server *s, unsigned long long ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(ms / 1000);
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        if (pthread_cond_timedwait(&s->stop_cond, &s->mu, &deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------------------------------
 * Connection thread
 * ---------------------------------------------------------------------------------------- */

static int record_request(lb_server *s, lb_conn *c, const lb_request_record *rec) {
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (s->nreqs == s->cap_reqs) {
        int cap = s->cap_reqs ? s->cap_reqs * 2 : 64;
        lb_request_record *p = realloc(s->reqs, (size_t)cap * sizeof *p);
        if (p) {
            s->reqs = p;
            s->cap_reqs = cap;
        } else {
            rc = -1;
        }
    }
    if (rc == 0) {
        s->reqs[s->nreqs] = *rec;
        s->reqs[s->nreqs].conn_index = c->index;
        s->nreqs++;
        c->requests++;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Finds the end of the head (after CRLFCRLF) in buffered input, reading more as needed.
 * Returns the head length, 0 on EOF, -1 if the head exceeds LB_MAX_HEAD. */
static ssize_t read_head(conn_io *io) {
    size_t scanned = 0;
    for (;;) {
        const char *base = io->buf + io->start;
        size_t avail = io->end - io->start;
        for (; scanned + 3 < avail; scanned++) {
            if (memcmp(base + scanned, "\r\n\r\n", 4) == 0) return (ssize_t)(scanned + 4);
        }
        ssize_t n = io_fill(io);
        if (n < 0) return -1;
        if (n == 0) return 0;
    }
}

/* Serves one request. Returns 1 to keep the connection, 0 to close it. */
static int serve_one(lb_server *s, lb_conn *c, conn_io *io, char *head_copy) {
    ssize_t head_len = read_head(io);
    if (head_len == 0) return 0;
    if (head_len < 0) {
        send_str(io->fd, "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n");
        return 0;
    }
    memcpy(head_copy, io->buf + io->start, (size_t)head_len);
    head_copy[head_len] = '\0';
    io->start += (size_t)head_len;

    parsed_head ph;
    if (memchr(head_copy, '\0', (size_t)head_len) != NULL || parse_head(head_copy, &ph) != 0) {
        send_str(io->fd, "HTTP/1.1 400 Bad Request\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n");
        return 0;
    }

    int is_echo = strcmp(ph.rec.path, "/echo") == 0;
    body_buf body = {NULL, 0, 0, is_echo, 0};
    if (read_body(io, &ph, &body, &ph.rec.body_len) != 0) {
        free(body.data);
        return 0;
    }
    if (record_request(s, c, &ph.rec) != 0) {
        free(body.data);
        return 0;
    }

    int closing = (ph.rec.has_connection && has_token(ph.rec.connection, "close")) ||
                  (ph.http10 && !ph.keep_alive_token);
    const char *path = ph.rec.path;
    int rc;
    if (strcmp(path, "/hello") == 0) {
        rc = respond(io->fd, &ph, 200, "OK", "text/plain", LB_HELLO_BODY,
                     strlen(LB_HELLO_BODY), closing);
    } else if (strcmp(path, "/big") == 0) {
        unsigned long long n = query_num(ph.query, "n", 0);
        if (n > BIG_MAX) n = BIG_MAX;
        rc = respond_big(io->fd, &ph, n, closing);
    } else if (strcmp(path, "/chunked") == 0) {
        rc = respond_chunked(io->fd, &ph, closing);
    } else if (strcmp(path, "/slow") == 0) {
        unsigned long long ms = query_num(ph.query, "ms", 0);
        slow_wait(s, ms > SLOW_MAX_MS ? SLOW_MAX_MS : ms);
        rc = respond(io->fd, &ph, 200, "OK", "text/plain", "slow\n", 5, closing);
    } else if (strcmp(path, "/close") == 0) {
        respond(io->fd, &ph, 200, "OK", "text/plain", "closing\n", 8, 1);
        rc = -1;
    } else if (strcmp(path, "/http10") == 0) {
        send_str(io->fd, "HTTP/1.0 200 OK\r\nServer: lb-loopback\r\nContent-Length: 4\r\n\r\nold\n");
        rc = -1;
    } else if (strcmp(path, "/malformed") == 0) {
        send_str(io->fd, "HTTP/1.1 abc\r\n\r\n");
        rc = -1;
    } else if (is_echo) {
        if (body.too_big) {
            respond(io->fd, &ph, 413, "Content Too Large", "text/plain", "", 0, 1);
            rc = -1;
        } else {
            rc = respond(io->fd, &ph, 200, "OK", "application/octet-stream", body.data,
                         body.len, closing);
        }
    } else {
        rc = respond(io->fd, &ph, 404, "Not Found", "text/plain", LB_NOT_FOUND_BODY,
                     strlen(LB_NOT_FOUND_BODY), closing);
    }
    free(body.data);
    return rc == 0 && !closing;
}

static void *conn_main(void *arg) {
    lb_conn *c = arg;
    lb_server *s = c->srv;
    conn_io io = {c->fd, malloc(LB_MAX_HEAD), 0, 0};
    char *head_copy = malloc(LB_MAX_HEAD + 1);
    if (io.buf && head_copy) {
        while (serve_one(s, c, &io, head_copy)) {
        }
    }
    free(head_copy);
    free(io.buf);
    pthread_mutex_lock(&s->mu);
    close(c->fd);
    c->fd = -1;
    c->finished = 1;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Accept thread
 * ---------------------------------------------------------------------------------------- */

/* Joins connection threads that have finished, so a long run does not pile up zombies.
 * Called with s->mu held: a finished thread only unlocks and returns, so this cannot block
 * on the mutex. */
static void reap_finished_locked(lb_server *s) {
    for (int i = 0; i < s->nconns; i++) {
        lb_conn *c = s->conns[i];
        if (c->finished && !c->joined) {
            pthread_join(c->thread, NULL);
            c->joined = 1;
        }
    }
}

static int add_conn_locked(lb_server *s, int fd, int peer_port) {
    if (s->nconns == s->cap_conns) {
        int cap = s->cap_conns ? s->cap_conns * 2 : 16;
        lb_conn **p = realloc(s->conns, (size_t)cap * sizeof *p);
        if (!p) return -1;
        s->conns = p;
        s->cap_conns = cap;
    }
    lb_conn *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->srv = s;
    c->index = s->nconns;
    c->fd = fd;
    c->peer_port = peer_port;
    if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
        free(c);
        return -1;
    }
    s->conns[s->nconns++] = c;
    return 0;
}

static void *accept_main(void *arg) {
    lb_server *s = arg;
    for (;;) {
        struct pollfd fds[2] = {{s->listen_fd, POLLIN, 0}, {s->wake_pipe[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (fds[1].revents) break; /* lb_stop */
        if (!(fds[0].revents & POLLIN)) {
            if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) break;
            continue;
        }
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept(s->listen_fd, (struct sockaddr *)&peer, &plen);
        if (fd < 0) {
            /* The client gave up between poll and accept, or a signal: try again. */
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN ||
                errno == EWOULDBLOCK)
                continue;
            break;
        }
        /* Heads and bodies go out in separate send()s: without this, Nagle holds the body
         * until the client's delayed ACK of the head (40 ms per response). */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_mutex_lock(&s->mu);
        reap_finished_locked(s);
        if (s->stopping || add_conn_locked(s, fd, ntohs(peer.sin_port)) != 0) close(fd);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------------------------- */

lb_server *lb_start(void) {
    lb_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->listen_fd = -1;
    s->wake_pipe[0] = s->wake_pipe[1] = -1;
    int mu_ok = 0, cond_ok = 0;
    if (pthread_mutex_init(&s->mu, NULL) != 0) goto fail;
    mu_ok = 1;
    if (pthread_cond_init(&s->stop_cond, NULL) != 0) goto fail;
    cond_ok = 1;
    if (pipe(s->wake_pipe) != 0) goto fail;

    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0) goto fail;
    int one = 1;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0) goto fail;
    if (listen(s->listen_fd, 128) != 0) goto fail;
    socklen_t alen = sizeof addr;
    if (getsockname(s->listen_fd, (struct sockaddr *)&addr, &alen) != 0) goto fail;
    s->port = ntohs(addr.sin_port);

    if (pthread_create(&s->accept_thread, NULL, accept_main, s) != 0) goto fail;
    return s;

fail: {
        int saved = errno;
        if (s->listen_fd >= 0) close(s->listen_fd);
        if (s->wake_pipe[0] >= 0) close(s->wake_pipe[0]);
        if (s->wake_pipe[1] >= 0) close(s->wake_pipe[1]);
        if (cond_ok) pthread_cond_destroy(&s->stop_cond);
        if (mu_ok) pthread_mutex_destroy(&s->mu);
        free(s);
        errno = saved;
        return NULL;
    }
}

int lb_port(const lb_server *s) { return s->port; }

int lb_connections(lb_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->nconns;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int lb_requests(lb_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->nreqs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int lb_conn_requests(lb_server *s, int conn_index) {
    pthread_mutex_lock(&s->mu);
    int n = conn_index >= 0 && conn_index < s->nconns ? s->conns[conn_index]->requests : -1;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int lb_conn_peer_port(lb_server *s, int conn_index) {
    pthread_mutex_lock(&s->mu);
    int n = conn_index >= 0 && conn_index < s->nconns ? s->conns[conn_index]->peer_port : -1;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int lb_conn_is_open(lb_server *s, int conn_index) {
    pthread_mutex_lock(&s->mu);
    int n = conn_index >= 0 && conn_index < s->nconns ? s->conns[conn_index]->fd >= 0 : -1;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int lb_count_requests_with_connection_close(lb_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = 0;
    for (int i = 0; i < s->nreqs; i++)
        if (s->reqs[i].has_connection && has_token(s->reqs[i].connection, "close")) n++;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int lb_request_at(lb_server *s, int index, lb_request_record *out) {
    pthread_mutex_lock(&s->mu);
    int ok = index >= 0 && index < s->nreqs;
    if (ok) *out = s->reqs[index];
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -1;
}

void lb_stop(lb_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->stop_cond);
    pthread_mutex_unlock(&s->mu);

    /* Wake the accept thread; after the join no connection can be added. */
    ssize_t w;
    do {
        w = write(s->wake_pipe[1], "x", 1);
    } while (w < 0 && errno == EINTR);
    pthread_join(s->accept_thread, NULL);
    close(s->listen_fd);

    /* Unblock connection threads in recv/send; each closes its own descriptor. */
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i]->fd >= 0) shutdown(s->conns[i]->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);

    for (int i = 0; i < s->nconns; i++) {
        if (!s->conns[i]->joined) pthread_join(s->conns[i]->thread, NULL);
        free(s->conns[i]);
    }
    free(s->conns);
    free(s->reqs);
    close(s->wake_pipe[0]);
    close(s->wake_pipe[1]);
    pthread_cond_destroy(&s->stop_cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
