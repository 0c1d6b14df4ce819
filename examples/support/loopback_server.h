/*
 * loopback_server: a small embedded HTTP/1.1 server for the servicepoint demo and C tests.
 *
 * It listens on 127.0.0.1 on an ephemeral port, serves each connection on its own thread with
 * keep-alive, and RECORDS what it observed (connections, their client ports, every request's
 * method, path and Connection header) so a caller can check what really went over the wire,
 * not just what the client library claims.
 *
 * Routes (by path, the query string is separate):
 *   /hello          200, LB_HELLO_BODY with Content-Length
 *   /big?n=N        200, N bytes with Content-Length; byte i is 'a' + i % 26 (see lb_big_byte)
 *   /chunked        200, LB_CHUNKED_BODY in several chunks, then trailer "X-Trailer: done"
 *   /slow?ms=N      waits N ms (at most 60000; cut short by lb_stop), then 200 "slow\n"
 *   /close          200 "closing\n" with "Connection: close", then closes the connection
 *   /http10         answers as an HTTP/1.0 server: "HTTP/1.0 200 OK", "old\n" with
 *                   Content-Length, then closes the connection
 *   /malformed      writes "HTTP/1.1 abc\r\n\r\n" (not a valid status line) and closes
 *   /echo           200, the request body (Content-Length or chunked) with Content-Length
 *   anything else   404, LB_NOT_FOUND_BODY
 * Request bodies on other routes are read and discarded. A request with "Connection: close"
 * (or HTTP/1.0 without "Connection: keep-alive") gets "Connection: close" and the connection
 * is closed after the response. A bad request head gets 400 (431 if over LB_MAX_HEAD) and a
 * close.
 *
 * Thread safety: every accessor may be called from any thread while the server runs; the
 * records are guarded by one mutex. Connection and request indexes count from 0 in the order
 * the server accepted / parsed them.
 */
#ifndef LOOPBACK_SERVER_H
#define LOOPBACK_SERVER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LB_HELLO_BODY "Hello, world!\n"
#define LB_CHUNKED_BODY "Hello, chunked world! 0123456789 abcdefghijklmnopqrstuvwxyz ABCDE\n"
#define LB_NOT_FOUND_BODY "not found\n"

/* Largest request head (request line + header fields + blank line) the server accepts. */
#define LB_MAX_HEAD 65536
/* Largest body /echo sends back; a bigger one gets 413 and a close. */
#define LB_MAX_ECHO (16 * 1024 * 1024)

typedef struct lb_server lb_server;

/* One request as the server parsed it. Strings are NUL-terminated and truncated to fit. */
typedef struct lb_request_record {
    int conn_index;           /* which connection it came on */
    char method[16];
    char target[512];         /* request target as sent, e.g. "/big?n=10" */
    char path[512];           /* target without the query, e.g. "/big" */
    int has_connection;       /* 1 if a Connection header was present */
    char connection[128];     /* its value (repeated fields joined with ", "), else "" */
    long long body_len;       /* request body bytes received */
} lb_request_record;

/* The body byte /big sends at offset i. */
static inline char lb_big_byte(size_t i) { return (char)('a' + (int)(i % 26)); }

/* Starts the server (listening, accept thread running). NULL on failure (errno describes). */
lb_server *lb_start(void);

/* The TCP port it listens on. */
int lb_port(const lb_server *s);

/* Connections accepted so far. */
int lb_connections(lb_server *s);

/* Requests parsed so far, over all connections. */
int lb_requests(lb_server *s);

/* Requests served on connection `conn_index`; -1 if there is no such connection. */
int lb_conn_requests(lb_server *s, int conn_index);

/* The client (peer) port of connection `conn_index`; -1 if there is no such connection. */
int lb_conn_peer_port(lb_server *s, int conn_index);

/* 1 if connection `conn_index` is still open on the server side, 0 if closed, -1 if none. */
int lb_conn_is_open(lb_server *s, int conn_index);

/* Requests that carried a Connection header containing the token "close". */
int lb_count_requests_with_connection_close(lb_server *s);

/* Copies request `index` into *out. Returns 0, or -1 if there is no such request. */
int lb_request_at(lb_server *s, int index, lb_request_record *out);

/* Stops the server: closes the listening socket, shuts down every client socket, joins every
 * thread and frees everything. NULL is ignored. */
void lb_stop(lb_server *s);

#ifdef __cplusplus
}
#endif

#endif /* LOOPBACK_SERVER_H */
