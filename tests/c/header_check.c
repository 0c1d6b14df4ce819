/*
 * header_check.c: include/servicepoint.h must compile as strict C99 (-Wpedantic -Werror)
 * and its declarations must match how C code uses them. Also run as a test: it checks that
 * the library it links against has the ABI this header describes.
 */
#include "servicepoint.h"

#include <stddef.h>
#include <stdio.h>

/* Each function with the exact type the header promises (a mismatch fails to compile). */
static sp_result (*const p_manager_new)(sp_manager **) = sp_manager_new;
static sp_result (*const p_find)(sp_manager *, const char *, sp_point **) = sp_find;
static sp_result (*const p_set_lease)(sp_point *, int32_t) = sp_set_lease_timeout;
static sp_result (*const p_request)(sp_manager *, sp_http_request *,
                                    sp_response **) = sp_request;
static sp_result (*const p_read)(sp_response *, uint8_t *, size_t, size_t *) =
    sp_response_read;
static const char *(*const p_strerror)(int32_t) = sp_strerror;

/* sp_statistics grows only by appending: struct_size comes first. */
typedef char struct_size_is_first[offsetof(sp_statistics, struct_size) == 0 ? 1 : -1];

static int32_t reader(void *userdata, uint8_t *buf, size_t cap, size_t *out_n) {
    (void)userdata;
    (void)buf;
    (void)cap;
    *out_n = 0;
    return 0;
}

int main(void) {
    sp_body_read_cb cb = reader;
    sp_result ok = SP_OK;
    int32_t infinite = SP_INFINITE;
    struct_size_is_first check;
    (void)check;
    (void)p_manager_new;
    (void)p_find;
    (void)p_set_lease;
    (void)p_request;
    (void)p_read;
    (void)cb;
    if (sp_abi_version() != SP_ABI_VERSION || ok != 0 || infinite != -1 ||
        SP_E_BODY_SOURCE != 25) {
        fprintf(stderr, "header_check (C): ABI mismatch: library %u, header %d\n",
                sp_abi_version(), SP_ABI_VERSION);
        return 1;
    }
    printf("header_check (C99): %s, %s\n", sp_version(), p_strerror(SP_E_CONNECT));
    return 0;
}
