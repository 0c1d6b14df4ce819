// header_check.cpp: include/servicepoint.h must compile as C++11 (-Wpedantic -Werror), with
// C linkage and an enum usable as sp_result. Also run as a test against the library.
#include "servicepoint.h"

#include <cstddef>
#include <cstdio>
#include <type_traits>

static_assert(std::is_same<std::underlying_type<sp_result>::type, int32_t>::value,
              "sp_result is int32_t-sized in C++ too");
static_assert(offsetof(sp_statistics, struct_size) == 0, "struct_size comes first");
static_assert(SP_INFINITE == -1, "infinite is -1");

int main() {
    sp_result (*find)(sp_manager *, const char *, sp_point **) = sp_find;
    sp_result (*request)(sp_manager *, sp_http_request *, sp_response **) =
        sp_request;
    (void)find;
    (void)request;

    sp_manager *m = nullptr;
    if (sp_manager_new(&m) != SP_OK) {
        std::fprintf(stderr, "header_check (C++): sp_manager_new: %s\n", sp_last_error());
        return 1;
    }
    int32_t limit = 0;
    sp_result rc = sp_manager_get_default_connection_limit(m, &limit);
    sp_manager_free(m);
    if (rc != SP_OK || limit != 2 || sp_abi_version() != SP_ABI_VERSION) {
        std::fprintf(stderr, "header_check (C++): unexpected rc %d / limit %d\n",
                     static_cast<int>(rc), static_cast<int>(limit));
        return 1;
    }
    std::printf("header_check (C++11): %s\n", sp_version());
    return 0;
}
