/*
 * abi_misuse.h: what the generated misuse cases (abi_misuse_cases.c, written at build time by
 * gen_abi_misuse.py from include/servicepoint.h) and the hand-written runner
 * (abi_misuse_runner.c) share.
 *
 * Each case calls one sp_ function once, with valid values for every parameter but one, and
 * that one misused (NULL, a freed, forged or wrong-kind handle, invalid UTF-8, a huge size).
 * The runner gives each case a fresh fixture (a live handle of every kind, made against the
 * loopback server) and checks afterwards that the fixture's handles are all still alive.
 */
#ifndef ABI_MISUSE_H
#define ABI_MISUSE_H

#include "servicepoint.h"

#include <stddef.h>
#include <stdint.h>

/* A live handle of every kind, made fresh for each case. */
typedef struct am_fixture {
    sp_manager *manager;
    sp_point *point;            /* sp_find(manager, loopback /hello) */
    sp_http_request *request;   /* GET loopback /hello */
    sp_response *response;      /* sp_request(manager, request), body unread */
    sp_operation *operation;    /* sp_request_async(manager, request), its response freed */
    sp_completion_queue *queue; /* sp_completion_queue_new */
    sp_cancel_token *token;     /* sp_cancel_token_new */
} am_fixture;

typedef struct am_case {
    const char *func;   /* e.g. "sp_find" */
    const char *param;  /* the misused parameter, or "-" */
    const char *misuse; /* e.g. "freed sp_manager" */
    void (*run)(am_fixture *f);
} am_case;

/* Generated. */
extern const am_case am_cases[];
extern const size_t am_case_count;
extern const size_t am_function_count;

/* What a case expects of an sp_result: an exact code, or these. */
#define AM_ANY_ERROR (-1) /* any code but SP_OK */
#define AM_NO_CHECK (-2)  /* anything (values that are legal, e.g. extreme int32 settings) */

/* Checks used by the generated cases; a failed check is reported against the current case. */
void am_check_rc(sp_result got, int want);
void am_check_last_error(void);
void am_check_unchanged(const void *now, const void *before, size_t n, const char *what);
void am_check_filled(const uint8_t *buf, size_t n, uint8_t fill, const char *what);
void am_check_cstr(const char *s, const char *what);
void am_fail(const char *what);

/* A buffer of n bytes, each `fill`, that ends right before an inaccessible page, so a read
 * or write past its end faults at once (the library is not ASan-instrumented). Unmapped when
 * the case ends. */
uint8_t *am_guard_buf(size_t n, uint8_t fill);

/* The loopback server's /hello URL. */
const char *am_url(void);

/* A handle of each kind that was issued and freed (made on demand from the fixture). */
sp_manager *am_freed_manager(am_fixture *f);
sp_point *am_freed_point(am_fixture *f);
sp_http_request *am_freed_request(am_fixture *f);
sp_response *am_freed_response(am_fixture *f);
sp_operation *am_freed_operation(am_fixture *f);
sp_completion_queue *am_freed_queue(am_fixture *f);
sp_cancel_token *am_freed_token(am_fixture *f);

/* A real C object: its address is a "foreign" pointer, never issued as a handle. */
extern unsigned char am_foreign_object[64];
/* Passed as userdata where a valid one is needed. */
extern int am_userdata;

#endif /* ABI_MISUSE_H */
