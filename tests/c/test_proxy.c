/*
 * C API tests, topic "proxy": the proxy settings of the manager and of a request, and
 * requests through a real proxy, Debian's tinyproxy, which this test starts on a loopback
 * port with a generated configuration (in a mkdtemp directory) and stops by its pid. Plain
 * http with Basic credentials (what the loopback server saw), the proxy's service point
 * (FindServicePoint(uri, proxy)), a 407 to CONNECT and a CONNECT refused by the proxy. The
 * tests needing tinyproxy say SKIPPED when it is not installed (tests/deps.sh installs it).
 */
#include "test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct tinyproxy {
    pid_t pid;
    int port;
    char dir[64];
    char conf[128];
    char log[128];
} tinyproxy;

static const char *tinyproxy_path(void) {
    if (access("/usr/bin/tinyproxy", X_OK) == 0) return "/usr/bin/tinyproxy";
    if (access("/usr/sbin/tinyproxy", X_OK) == 0) return "/usr/sbin/tinyproxy";
    return NULL;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int accepts(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* Starts tinyproxy with Basic credentials user:secret. 0 on success; -1 when it is not
 * installed (the caller skips); -2 when it would not start. */
static int tinyproxy_start(tinyproxy *t) {
    const char *bin = tinyproxy_path();
    if (!bin) return -1;
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/servicepoint-proxy-XXXXXX");
    if (!mkdtemp(t->dir)) return -2;
    snprintf(t->conf, sizeof t->conf, "%s/tinyproxy.conf", t->dir);
    snprintf(t->log, sizeof t->log, "%s/tinyproxy.log", t->dir);
    t->port = free_port();
    FILE *f = fopen(t->conf, "w");
    if (!f || t->port <= 0) {
        if (f) fclose(f);
        return -2;
    }
    fprintf(f,
            "Port %d\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n"
            "BasicAuth user secret\nLogLevel Info\nDisableViaHeader Yes\n",
            t->port);
    fclose(f);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, t->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    char *argv[] = {(char *)bin, "-d", "-c", t->conf, NULL};
    int rc = posix_spawn(&t->pid, bin, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return -2;
    for (int i = 0; i < 500 && !accepts(t->port); i++) sleep_ms(20);
    return accepts(t->port) ? 0 : -2;
}

static void tinyproxy_stop(tinyproxy *t) {
    if (t->pid > 0) {
        kill(t->pid, SIGTERM);
        waitpid(t->pid, NULL, 0);
        t->pid = 0;
    }
    unlink(t->conf);
    unlink(t->log);
    rmdir(t->dir);
}

/* Copies a text getter's value into buf (at most cap bytes); returns its code. */
typedef sp_result (*manager_text)(const sp_manager *, char *, size_t, size_t *);

static int text_is(manager_text get, const sp_manager *m, const char *want) {
    char buf[256];
    size_t len = 0;
    if (get(m, buf, sizeof buf, &len) != SP_OK) return 0;
    return len == strlen(want) && strcmp(buf, want) == 0;
}

static void test_settings(void) {
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    char buf[128];
    size_t len = 0;
    int32_t on = -1;
    REQUIRE_OK(sp_manager_new(&m));
    CHECK(text_is(sp_manager_get_proxy, m, ""));
    CHECK(text_is(sp_manager_get_proxy_bypass, m, "localhost, 127.0.0.0/8, ::1"));
    CHECK_OK(sp_manager_get_use_environment_proxy(m, &on));
    CHECK(on == 0);
    CHECK_OK(sp_manager_set_proxy(m, "u%40x:pw@Proxy.Example:3128"));
    CHECK(text_is(sp_manager_get_proxy, m, "http://u%40x:pw@proxy.example:3128"));
    CHECK_RC(sp_manager_set_proxy(m, "socks5://h:1080"), SP_E_UNSUPPORTED_SCHEME);
    CHECK_RC(sp_manager_set_proxy(m, "http://h/path"), SP_E_INVALID_URL);
    CHECK(text_is(sp_manager_get_proxy, m, "http://u%40x:pw@proxy.example:3128"));
    CHECK_OK(sp_manager_set_proxy(m, NULL));
    CHECK(text_is(sp_manager_get_proxy, m, ""));
    CHECK_OK(sp_manager_set_proxy_bypass(m, ".corp.example;10.0.0.0/8 <local>"));
    CHECK(text_is(sp_manager_get_proxy_bypass, m, ".corp.example, 10.0.0.0/8, <local>"));
    CHECK_RC(sp_manager_set_proxy_bypass(m, "10.0.0.0/40"), SP_E_INVALID_ARGUMENT);
    CHECK_RC(sp_manager_set_use_environment_proxy(m, 2), SP_E_OUT_OF_RANGE);
    /* A request's own proxy: none (the manager's), "" (direct), a URL. */
    REQUIRE_OK(sp_http_request_new("GET", "http://example.com/", &req));
    CHECK_RC(sp_http_request_get_proxy(req, buf, sizeof buf, &len), SP_E_NOT_FOUND);
    CHECK_OK(sp_http_request_set_proxy(req, ""));
    CHECK_OK(sp_http_request_get_proxy(req, buf, sizeof buf, &len));
    CHECK(len == 0 && buf[0] == 0);
    CHECK_OK(sp_http_request_set_proxy(req, "http://p:8080"));
    CHECK_OK(sp_http_request_get_proxy(req, buf, sizeof buf, &len));
    CHECK(strcmp(buf, "http://p:8080") == 0 && len == 13);
    CHECK_RC(sp_http_request_set_proxy(req, "ftp://p"), SP_E_UNSUPPORTED_SCHEME);
    CHECK_OK(sp_http_request_set_proxy(req, NULL));
    CHECK_RC(sp_http_request_get_proxy(req, buf, sizeof buf, &len), SP_E_NOT_FOUND);
    CHECK(strcmp(sp_strerror(SP_E_PROXY_AUTH_REQUIRED), "proxy authentication required (407)") == 0);
cleanup:
    sp_http_request_free(req);
    sp_manager_free(m);
}

static void test_through_tinyproxy(void) {
    tinyproxy t;
    int started = tinyproxy_start(&t);
    if (started == -1) {
        fprintf(stderr, "SKIPPED through_tinyproxy: tinyproxy is not installed\n");
        return;
    }
    CHECK(started == 0);
    lb_server *srv = start_server();
    sp_manager *m = NULL, *bare = NULL;
    sp_point *point = NULL, *direct = NULL;
    fetched f;
    memset(&f, 0, sizeof f);
    char url[256], https[256], proxy[128], address_want[128];
    const char *address = NULL;
    if (started != 0) goto cleanup;
    make_url(url, sizeof url, srv, "/hello");
    snprintf(https, sizeof https, "https://127.0.0.1:%d/", lb_port(srv));
    snprintf(proxy, sizeof proxy, "http://user:secret@127.0.0.1:%d", t.port);
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_manager_set_proxy(m, proxy));
    /* Loopback is bypassed by default: direct. */
    REQUIRE_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.status == 200 && body_is(&f, LB_HELLO_BODY));
    fetched_free(&f);
    CHECK(lb_connections(srv) == 1);
    /* Without the bypass list, through tinyproxy, twice. */
    REQUIRE_OK(sp_manager_set_proxy_bypass(m, ""));
    for (int i = 0; i < 2; i++) {
        REQUIRE_OK(fetch(m, "GET", url, NULL, 0, &f));
        CHECK(f.status == 200 && body_is(&f, LB_HELLO_BODY));
        fetched_free(&f);
    }
    CHECK(lb_requests(srv) == 3);
    lb_request_record r;
    CHECK(lb_request_at(srv, 2, &r) == 0 && strcmp(r.target, "/hello") == 0);
    /* The proxy's service point (FindServicePoint(uri, proxy)) served them. */
    REQUIRE_OK(sp_find_with_proxy(m, url, NULL, &point));
    REQUIRE_OK(sp_get_address(point, &address));
    snprintf(address_want, sizeof address_want, "http://127.0.0.1:%d", t.port);
    CHECK(strcmp(address, address_want) == 0);
    sp_statistics st;
    CHECK_OK(get_stats(point, &st));
    CHECK(st.requests == 2);
    REQUIRE_OK(sp_find_with_proxy(m, url, "", &direct));
    CHECK_OK(sp_get_address(direct, &address));
    CHECK(strncmp(address, "http://127.0.0.1:", 17) == 0 && strcmp(address, address_want) != 0);
    /* A tunnel to a port nobody listens on: tinyproxy refuses the CONNECT. */
    snprintf(https, sizeof https, "https://127.0.0.1:%d/", free_port());
    CHECK_RC(fetch(m, "GET", https, NULL, 0, &f), SP_E_PROXY_CONNECT);
    CHECK(strstr(sp_last_error(), "CONNECT answered") != NULL);
    /* No credentials: 407 for plain http is the response, for CONNECT its own code. */
    REQUIRE_OK(sp_manager_new(&bare));
    REQUIRE_OK(sp_manager_set_proxy_bypass(bare, ""));
    snprintf(proxy, sizeof proxy, "127.0.0.1:%d", t.port);
    REQUIRE_OK(sp_manager_set_proxy(bare, proxy));
    REQUIRE_OK(fetch(bare, "GET", url, NULL, 0, &f));
    CHECK(f.status == 407);
    fetched_free(&f);
    CHECK_RC(fetch(bare, "GET", https, NULL, 0, &f), SP_E_PROXY_AUTH_REQUIRED);
    CHECK(strstr(sp_last_error(), "407") != NULL);
cleanup:
    fetched_free(&f);
    sp_point_free(direct);
    sp_point_free(point);
    sp_manager_free(bare);
    sp_manager_free(m);
    lb_stop(srv);
    tinyproxy_stop(&t);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"settings", test_settings},
        {"through_tinyproxy", test_through_tinyproxy},
    };
    return RUN_TESTS("proxy", tests, argc, argv);
}
