/*
 * app.c: a tiny program using the installed servicepoint package.
 *
 * Built two ways (tests/c/check_packaging.sh does both against a temporary prefix):
 *   CMake:       find_package(servicepoint) + servicepoint::servicepoint (CMakeLists.txt here)
 *   pkg-config:  cc -std=c99 -I examples/support examples/consumer/app.c \
 *                   examples/support/loopback_server.c \
 *                   $(pkg-config --cflags --libs servicepoint) -pthread
 *
 * It starts the embedded loopback server (examples/support/loopback_server.c), GETs /hello
 * through a connection manager, checks the status and body, and exits 0 (1 on any failure).
 */
#define _POSIX_C_SOURCE 200809L

#include <servicepoint.h>

#include "loopback_server.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    lb_server *srv = NULL;
    sp_manager *manager = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    const uint8_t *body = NULL;
    size_t len = 0;
    int32_t status = 0;
    char url[128];
    sp_result rc;
    int ok = 0;

    /* The library must have the ABI of the header this program was compiled with. */
    if (sp_abi_version() != SP_ABI_VERSION) {
        fprintf(stderr, "app: library ABI %u, header ABI %d\n", (unsigned)sp_abi_version(),
                SP_ABI_VERSION);
        return 1;
    }
    srv = lb_start();
    if (srv == NULL) {
        perror("lb_start");
        return 1;
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", lb_port(srv));

    rc = sp_manager_new(&manager);
    if (rc == SP_OK) rc = sp_http_request_new("GET", url, &req);
    if (rc == SP_OK) rc = sp_request(manager, req, &resp);
    if (rc == SP_OK) rc = sp_response_status(resp, &status);
    if (rc == SP_OK) rc = sp_response_read_all(resp, &body, &len);
    if (rc != SP_OK) {
        fprintf(stderr, "app: GET %s failed: %s: %s\n", url, sp_strerror(rc), sp_last_error());
    } else if (status != 200 || len != strlen(LB_HELLO_BODY) ||
               memcmp(body, LB_HELLO_BODY, len) != 0) {
        fprintf(stderr, "app: GET %s: unexpected status %d or body (%zu bytes)\n", url,
                (int)status, len);
    } else {
        printf("app: %s (header %s): GET %s -> %d \"%.*s\"\n", sp_version(), SP_VERSION_STRING,
               url, (int)status, (int)(len - 1), (const char *)body); /* body ends in \n */
        ok = 1;
    }

    /* The _free functions accept NULL; the body is borrowed from the response. */
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(manager);
    lb_stop(srv);
    return ok ? 0 : 1;
}
