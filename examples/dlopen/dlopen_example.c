/*
 * dlopen_example.c: uses servicepoint loaded at run time with dlopen(3), as a plugin host or a
 * language runtime would, instead of linking against it.
 *
 *   dlopen_example [PATH-TO-libservicepoint.so]
 *
 * The library is looked up as argv[1], else $SERVICEPOINT_LIB, else "libservicepoint.so" (the
 * dynamic loader's search: LD_LIBRARY_PATH, the cache, the default directories).
 *
 * What it does: checks sp_abi_version() against the header's SP_ABI_VERSION, starts the
 * embedded loopback server (examples/support/loopback_server.c), finds the service point for
 * it, sets its lease timeout to infinite, sends two GET requests and reads their bodies, then
 * checks the bodies and that the server saw ONE connection carrying BOTH requests (keep-alive
 * through the pool). Exit status 0 on success, 1 on a failed check, 2 if the library cannot
 * be loaded.
 *
 * The same source compiles as C99 and as C++11 (the ctest tests dlopen_c and dlopen_cxx):
 *   cc  -std=c99   -Wall -Wextra -Wpedantic -Werror -Iinclude -Iexamples/support              \
 *       examples/dlopen/dlopen_example.c examples/support/loopback_server.c -ldl -pthread
 *   cc  -std=c99 -c examples/support/loopback_server.c -o loopback_server.o -pthread
 *   g++ -x c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -Iinclude -Iexamples/support       \
 *       examples/dlopen/dlopen_example.c -x none loopback_server.o -ldl -pthread
 * It does NOT link against libservicepoint: the header is included for its types and
 * constants (and to check the function pointer types below), and every function is reached
 * through dlsym(). Calling an sp_ function directly would fail to link, which keeps it honest.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* dlopen/dlsym (POSIX) and the loopback server's threads */
#endif

#include "servicepoint.h"
#include "loopback_server.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Every library function this program uses, as X(name, return type, (parameters)), spelled
 * exactly as in include/servicepoint.h. One list generates the function pointer typedefs, the
 * table they are loaded into, the dlsym() calls, and a compile-time check of each typedef
 * against the header's prototype (check_types_against_header), so the list cannot drift from
 * the header unnoticed.
 */
#define SP_FUNCTIONS(X)                                                                        \
    X(sp_abi_version, uint32_t, (void))                                                        \
    X(sp_version, const char *, (void))                                                        \
    X(sp_strerror, const char *, (int32_t code))                                               \
    X(sp_last_error, const char *, (void))                                                     \
    X(sp_manager_new, sp_result, (struct sp_manager **out_manager))                            \
    X(sp_manager_free, void, (struct sp_manager *manager))                                     \
    X(sp_find, sp_result,                                                                      \
      (struct sp_manager *manager, const char *uri, struct sp_point **out_point))              \
    X(sp_point_free, void, (struct sp_point *point))                                           \
    X(sp_get_address, sp_result, (const struct sp_point *point, const char **out_address))     \
    X(sp_set_lease_timeout, sp_result, (struct sp_point *point, int32_t ms))                   \
    X(sp_get_lease_timeout, sp_result, (const struct sp_point *point, int32_t *out_value))     \
    X(sp_http_request_new, sp_result,                                                          \
      (const char *method, const char *url, struct sp_http_request **out_request))             \
    X(sp_http_request_free, void, (struct sp_http_request *request))                           \
    X(sp_request, sp_result,                                                                   \
      (struct sp_manager *manager, struct sp_http_request *request,                            \
       struct sp_response **out_response))                                                     \
    X(sp_response_free, void, (struct sp_response *response))                                  \
    X(sp_response_status, sp_result, (const struct sp_response *response, int32_t *out))       \
    X(sp_response_connection_reused, sp_result,                                                \
      (const struct sp_response *response, int32_t *out_reused))                               \
    X(sp_response_read, sp_result,                                                             \
      (struct sp_response *response, uint8_t *buf, size_t cap, size_t *out_n))

/* The typedefs get C language linkage in C++, like the functions they point to. */
#ifdef __cplusplus
extern "C" {
#endif
#define DECLARE_FN_TYPE(name, ret, params) typedef ret(*name##_fn) params;
SP_FUNCTIONS(DECLARE_FN_TYPE)
#undef DECLARE_FN_TYPE
#ifdef __cplusplus
}
#endif

/* The loaded functions; members are named like the functions: api.sp_request(...). */
typedef struct sp_api {
#define DECLARE_MEMBER(name, ret, params) name##_fn name;
    SP_FUNCTIONS(DECLARE_MEMBER)
#undef DECLARE_MEMBER
} sp_api;

/* dlsym() returns void *; this program copies it into a function pointer of the same size
 * (POSIX guarantees the representation; ISO C does not allow the cast, hence memcpy). */
typedef char function_pointer_fits_void_pointer[sizeof(sp_manager_new_fn) == sizeof(void *)
                                                    ? 1
                                                    : -1];

/*
 * Each typedef must match the header's prototype: assigning the header's function to a
 * pointer of the typedef is an error in C++ and an incompatible-pointer-types diagnostic in C
 * (an error under -Werror). The assignment sits inside sizeof, which is never evaluated, so
 * no reference to the library's symbols is emitted and nothing is linked.
 */
static void check_types_against_header(sp_api *api) {
#define CHECK_FN_TYPE(name, ret, params) (void)sizeof(api->name = name);
    SP_FUNCTIONS(CHECK_FN_TYPE)
#undef CHECK_FN_TYPE
    (void)api;
}

/* Resolves `name` in `lib` into the function pointer at `slot`. 0 on success. */
static int load_symbol(void *lib, const char *name, void *slot) {
    void *sym;
    (void)dlerror(); /* clear a stale error */
    sym = dlsym(lib, name);
    if (sym == NULL) {
        const char *err = dlerror();
        fprintf(stderr, "dlsym(%s): %s\n", name, err ? err : "symbol is NULL");
        return -1;
    }
    memcpy(slot, &sym, sizeof sym);
    return 0;
}

/* Fills *api from `lib`. 0 on success, -1 if a symbol is missing. */
static int load_api(void *lib, sp_api *api) {
    int failures = 0;
    memset(api, 0, sizeof *api);
    check_types_against_header(api);
#define LOAD_FN(name, ret, params) failures += load_symbol(lib, #name, &api->name) != 0;
    SP_FUNCTIONS(LOAD_FN)
#undef LOAD_FN
    return failures ? -1 : 0;
}

static sp_api api;
static int g_failed;

/* Reports a failed check with the library's last error for this thread. */
#define CHECK(expr)                                                                            \
    do {                                                                                       \
        if (!(expr)) {                                                                         \
            g_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n    sp_last_error: \"%s\"\n",            \
                    __FILE__, __LINE__, #expr, api.sp_last_error());                           \
        }                                                                                      \
    } while (0)

#define CHECK_OK(call)                                                                         \
    do {                                                                                       \
        sp_result rc_ = (call);                                                                \
        if (rc_ != SP_OK) {                                                                    \
            g_failed++;                                                                        \
            fprintf(stderr, "%s:%d: %s returned %d (%s)\n    sp_last_error: \"%s\"\n",         \
                    __FILE__, __LINE__, #call, (int)rc_, api.sp_strerror((int32_t)rc_),        \
                    api.sp_last_error());                                                      \
        }                                                                                      \
    } while (0)

/* GET `url` through `manager`, read the body with sp_response_read() into buf (NUL-
 * terminated, truncated to cap - 1 bytes). Returns the status, or -1 after a failure. */
static int32_t get(sp_manager *manager, const char *url, char *buf, size_t cap,
                   int32_t *out_reused) {
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    int32_t status = -1;
    size_t len = 0;
    sp_result rc;

    *out_reused = -1;
    rc = api.sp_http_request_new("GET", url, &req);
    if (rc == SP_OK) rc = api.sp_request(manager, req, &resp);
    if (rc == SP_OK) rc = api.sp_response_status(resp, &status);
    if (rc == SP_OK) rc = api.sp_response_connection_reused(resp, out_reused);
    /* Read to the end of the body: that returns the connection to the pool. */
    while (rc == SP_OK) {
        uint8_t chunk[64];
        size_t n = 0;
        rc = api.sp_response_read(resp, chunk, sizeof chunk, &n);
        if (rc != SP_OK || n == 0) break;
        if (n > cap - 1 - len) n = cap - 1 - len; /* keep what fits, read on to the end */
        memcpy(buf + len, chunk, n);
        len += n;
    }
    buf[len] = '\0';
    if (rc != SP_OK) {
        g_failed++;
        fprintf(stderr, "GET %s: %d (%s): %s\n", url, (int)rc, api.sp_strerror((int32_t)rc),
                api.sp_last_error());
        status = -1;
    }
    /* The _free functions accept NULL. */
    api.sp_response_free(resp);
    api.sp_http_request_free(req);
    return status;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    void *lib;
    lb_server *srv = NULL;
    sp_manager *manager = NULL;
    sp_point *point = NULL;
    const char *address = NULL;
    int32_t lease = 0;
    char url[128];
    int i;
    int flags = RTLD_NOW | RTLD_LOCAL;

    if (argc > 1) {
        path = argv[1];
    } else {
        path = getenv("SERVICEPOINT_LIB");
        if (path == NULL || path[0] == '\0') path = "libservicepoint.so";
    }

    /*
     * RTLD_NOW: resolve everything now rather than fail in the middle of a call.
     * RTLD_NODELETE: the library keeps a process-wide runtime whose threads run its code until
     * the process exits, so it must never be unmapped; with this flag dlclose() below only
     * drops the reference (dlclose of a library with live threads would crash them).
     */
#ifdef RTLD_NODELETE
    flags |= RTLD_NODELETE;
#endif
    lib = dlopen(path, flags);
    if (lib == NULL) {
        fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
        return 2;
    }
    if (load_api(lib, &api) != 0) {
        fprintf(stderr, "%s is not a servicepoint library this program can use\n", path);
        return 2;
    }

    /* Refuse a library whose ABI differs from the header this program was compiled with. */
    if (api.sp_abi_version() != SP_ABI_VERSION) {
        fprintf(stderr, "ABI mismatch: %s has ABI %u, this program was built for %d\n", path,
                (unsigned)api.sp_abi_version(), SP_ABI_VERSION);
        return 2;
    }
    printf("loaded %s: %s (ABI %u), compiled as %s\n", path, api.sp_version(),
           (unsigned)api.sp_abi_version(),
#ifdef __cplusplus
           "C++"
#else
           "C"
#endif
    );

    srv = lb_start();
    if (srv == NULL) {
        perror("lb_start");
        return 1;
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", lb_port(srv));

    CHECK_OK(api.sp_manager_new(&manager));
    if (manager == NULL) goto done;
    CHECK_OK(api.sp_find(manager, url, &point));
    if (point == NULL) goto done;
    CHECK_OK(api.sp_get_address(point, &address));
    /* Connections live as long as they stay usable (SP_INFINITE is also the default). */
    CHECK_OK(api.sp_set_lease_timeout(point, SP_INFINITE));
    CHECK_OK(api.sp_get_lease_timeout(point, &lease));
    CHECK(lease == SP_INFINITE);

    for (i = 0; i < 2; i++) {
        char body[256];
        int32_t reused = -1;
        int32_t status = get(manager, url, body, sizeof body, &reused);
        CHECK(status == 200);
        CHECK(strcmp(body, LB_HELLO_BODY) == 0);
        CHECK(reused == (i > 0)); /* the second request rides the first one's connection */
        printf("GET %s -> %d, reused %d, body \"%.*s\"\n", url, (int)status, (int)reused,
               (int)strcspn(body, "\n"), body);
    }

    /* What the server saw on the wire, not what the library claims. */
    CHECK(lb_connections(srv) == 1);
    CHECK(lb_requests(srv) == 2);
    printf("service point %s: server saw %d connection(s) for %d request(s)\n",
           address ? address : "?", lb_connections(srv), lb_requests(srv));

done:
    /* Free in reverse order; the _free functions accept NULL. */
    api.sp_point_free(point);
    api.sp_manager_free(manager);
    lb_stop(srv);
    dlclose(lib);
    if (g_failed) {
        fprintf(stderr, "dlopen example: %d check(s) failed\n", g_failed);
        return 1;
    }
    printf("dlopen example: OK\n");
    return 0;
}
