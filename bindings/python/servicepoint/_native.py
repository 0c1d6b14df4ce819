"""Loading of libservicepoint and the ctypes declarations of every C function.

Every function of ``include/servicepoint.h`` is declared here with ``argtypes`` and
``restype``. Handles are opaque pointers (``c_void_p``); fallible functions return
``int32_t`` and get an ``errcheck`` that raises the matching
:class:`~servicepoint.errors.ServicePointError` subclass, reading ``sp_last_error()`` and
``sp_last_error_request_sent()`` immediately, on the calling thread (both are thread-local).

``ctypes.CDLL`` releases the GIL for the duration of each call, so blocking calls
(``sp_request``, ``sp_response_read``) let other Python threads run.

Where the library is looked for, in order:

1. ``$SERVICEPOINT_LIB`` (a full path; if set, it must load);
2. the shared library bundled in this package (``servicepoint/libservicepoint.so``, or a
   versioned ``libservicepoint.so.N``: what ``pip install`` / the wheel put there);
3. the repository's build directories, found relative to this file when it runs from the
   source tree: ``$CARGO_TARGET_DIR/{release,debug}``, ``target/release``, ``target/debug``
   (the most recently built first);
4. ``ctypes.util.find_library("servicepoint")``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import operator
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import errors

#: The ABI version this binding was written for (SP_ABI_VERSION in the header).
ABI_VERSION = 2

#: Result code of success.
SP_OK = 0
#: The infinite duration for every millisecond setting.
SP_INFINITE = -1

if sys.platform == "darwin":
    LIBRARY_FILE = "libservicepoint.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "servicepoint.dll"
else:
    LIBRARY_FILE = "libservicepoint.so"

ENV_VAR = "SERVICEPOINT_LIB"


def _source_root(here: Path) -> Optional[Path]:
    """The repository root when this file runs from the source tree
    (<repo>/bindings/python/servicepoint/_native.py), else None."""
    if len(here.parents) < 3:
        return None
    root = here.parents[2]
    if here.parent.name == "python" and (root / "Cargo.toml").is_file():
        return root
    return None


def _candidates() -> List[Tuple[str, str]]:
    """(description, path) pairs, in search order, excluding the environment variable."""
    here = Path(__file__).resolve().parent
    cands: List[Tuple[str, str]] = [("bundled in the package", str(here / LIBRARY_FILE))]
    # A versioned file name (libservicepoint.so.2 when the library has a SONAME) is found too.
    cands.extend(
        ("bundled in the package", str(p))
        for p in sorted(here.glob(LIBRARY_FILE + ".*"), reverse=True)
        if p.name != LIBRARY_FILE
    )
    target_dirs: List[Path] = []
    env_target = os.environ.get("CARGO_TARGET_DIR")
    if env_target:
        target_dirs.append(Path(env_target))
    root = _source_root(here)
    if root is not None:
        target_dirs.append(root / "target")
    for target in target_dirs:
        builds = [target / profile / LIBRARY_FILE for profile in ("release", "debug")]
        # The most recently built profile first: a stale release build must not shadow a
        # fresh debug one (or the other way round).
        builds.sort(key=lambda p: p.stat().st_mtime if p.exists() else 0.0, reverse=True)
        cands.extend(("build dir", str(b)) for b in builds)
    return cands


def _load() -> Tuple[ctypes.CDLL, str]:
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return ctypes.CDLL(env), env
        except OSError as exc:
            raise ImportError(
                "servicepoint: cannot load the library named by ${}={!r}: {}".format(
                    ENV_VAR, env, exc
                )
            ) from exc
    tried: List[str] = ["${} (not set)".format(ENV_VAR)]
    if _source_root(Path(__file__).resolve().parent) is None:
        tried.append("repository build dirs target/release, target/debug (not run from the source tree)")
    for what, path in _candidates():
        if not os.path.exists(path):
            tried.append("{} ({}: not found)".format(path, what))
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:
            tried.append("{} ({}: {})".format(path, what, exc))
    found = ctypes.util.find_library("servicepoint")
    if found:
        try:
            return ctypes.CDLL(found), found
        except OSError as exc:
            tried.append("ctypes.util.find_library: {} ({})".format(found, exc))
    else:
        tried.append("ctypes.util.find_library('servicepoint') (not found)")
    raise ImportError(
        "servicepoint: cannot find {}. Build it with `cargo build` in the repository, or set "
        "${} to its full path. Looked in:\n  {}".format(LIBRARY_FILE, ENV_VAR, "\n  ".join(tried))
    )


lib, LIBRARY_PATH = _load()
#: The same library, with calls that keep the GIL: ctypes.CDLL releases and re-takes the GIL
#: around every call, which costs more than the quick non-blocking functions themselves.
#: Only calls that may wait on the network or on other threads release the GIL.
_quick = ctypes.PyDLL(LIBRARY_PATH)
_RELEASE_GIL = {
    "sp_request",
    "sp_response_read",
    "sp_response_read_all",
    "sp_response_free",  # may drain a short body remainder
    "sp_manager_free",
    "sp_find",
    "sp_close_connection_group",
    "sp_set_connection_limit",
    "sp_get_statistics",
    "sp_get_current_connections",
    "sp_get_histogram",
    "sp_manager_get_statistics",
    "sp_manager_get_histogram",
    # Replacing the log callback may wait for a message being delivered on another thread,
    # whose callback needs the GIL.
    "sp_manager_set_log_callback",
    # Freeing a queue runs its queued callbacks and later ones on a runtime thread; a cancel
    # or an operation's release may wait for a callback running on a runtime thread, which
    # needs the GIL.
    "sp_completion_queue_free",
    "sp_operation_cancel",
    "sp_operation_free",
}


# --- types -------------------------------------------------------------------------------

c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_uint64_p = ctypes.POINTER(ctypes.c_uint64)
c_size_t_p = ctypes.POINTER(ctypes.c_size_t)
c_void_p_p = ctypes.POINTER(ctypes.c_void_p)
c_char_p_p = ctypes.POINTER(ctypes.c_char_p)

# Opaque handles: struct sp_manager *, sp_point *, sp_http_request *, sp_response *.
manager_p = ctypes.c_void_p
point_p = ctypes.c_void_p
request_p = ctypes.c_void_p
response_p = ctypes.c_void_p
# struct sp_operation *, sp_completion_queue *, sp_cancel_token *.
operation_p = ctypes.c_void_p
queue_p = ctypes.c_void_p
token_p = ctypes.c_void_p


class sp_statistics(ctypes.Structure):
    """struct sp_statistics (set struct_size before sp_get_statistics)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("open", ctypes.c_uint64),
        ("idle", ctypes.c_uint64),
        ("busy", ctypes.c_uint64),
        ("waiting", ctypes.c_uint64),
        ("connections_opened", ctypes.c_uint64),
        ("requests", ctypes.c_uint64),
        ("reuses", ctypes.c_uint64),
        ("retries", ctypes.c_uint64),
        ("closed_lease", ctypes.c_uint64),
        ("closed_idle", ctypes.c_uint64),
        ("closed_keep_alive_off", ctypes.c_uint64),
        ("closed_server", ctypes.c_uint64),
        ("closed_stale", ctypes.c_uint64),
        ("closed_error", ctypes.c_uint64),
        ("closed_max_requests", ctypes.c_uint64),
        ("closed_group", ctypes.c_uint64),
        ("closed_abandoned", ctypes.c_uint64),
        ("tls_full_handshakes", ctypes.c_uint64),
        ("tls_resumed_handshakes", ctypes.c_uint64),
        ("closed_in_flight", ctypes.c_uint64),
        ("closed_address_gone", ctypes.c_uint64),
        ("pipelined", ctypes.c_uint64),
        ("pipeline_replays", ctypes.c_uint64),
    ]


#: Number of buckets of an sp_histogram (SP_HISTOGRAM_BUCKETS).
SP_HISTOGRAM_BUCKETS = 20
#: Which histogram sp_get_histogram() / sp_manager_get_histogram() read.
SP_METRIC_QUEUE_WAIT = 0
SP_METRIC_CONNECTION_LIFETIME = 1
#: Log levels of sp_manager_set_log_callback().
SP_LOG_OFF = 0
SP_LOG_ERROR = 1
SP_LOG_WARN = 2
SP_LOG_INFO = 3
SP_LOG_DEBUG = 4


class sp_histogram(ctypes.Structure):
    """struct sp_histogram (set struct_size before sp_get_histogram)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("bucket_count", ctypes.c_uint32),
        ("count", ctypes.c_uint64),
        ("sum_us", ctypes.c_uint64),
        ("buckets", ctypes.c_uint64 * SP_HISTOGRAM_BUCKETS),
    ]


#: typedef void (*sp_log_cb)(void *userdata, int32_t level, const char *message);
sp_log_cb = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p)

#: typedef int32_t (*sp_body_read_cb)(void *userdata, uint8_t *buf, size_t cap, size_t *out_n);
sp_body_read_cb = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p
)

#: typedef void (*sp_response_callback)(void *userdata, sp_result result, struct sp_response *);
sp_response_callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p)

#: typedef void (*sp_read_callback)(void *userdata, sp_result result, const uint8_t *data,
#:     size_t len);
sp_read_callback = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t
)


# --- declarations ------------------------------------------------------------------------

#: Every declared function: name -> ctypes function object (with argtypes/restype set).
FUNCTIONS: Dict[str, Any] = {}


def _decode(raw: Optional[bytes]) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


def _check(result: int, func: Any, args: Sequence[Any]) -> int:
    """errcheck of every fallible function: raise on a non-zero sp_result.

    Runs on the calling thread right after the C call returned, so the thread-local last
    error is the one of this call.
    """
    if result != SP_OK:
        message = _decode(sp_last_error())
        sent = bool(sp_last_error_request_sent())
        if not message:
            message = _decode(sp_strerror(result))
        name = getattr(func, "__name__", None)
        raise errors.error_from_code(result, message, sent, name)
    return result


def _declare(
    name: str,
    argtypes: Sequence[Any],
    restype: Any = ctypes.c_int32,
    check: bool = True,
) -> Any:
    func = getattr(lib if name in _RELEASE_GIL else _quick, name)
    func.argtypes = list(argtypes)
    func.restype = restype
    if check:
        func.errcheck = _check
    FUNCTIONS[name] = func
    return func


# Errors and version (infallible; declared first because _check uses them).
sp_version = _declare("sp_version", [], ctypes.c_char_p, check=False)
sp_abi_version = _declare("sp_abi_version", [], ctypes.c_uint32, check=False)
sp_strerror = _declare("sp_strerror", [ctypes.c_int32], ctypes.c_char_p, check=False)
sp_last_error = _declare("sp_last_error", [], ctypes.c_char_p, check=False)
sp_last_error_request_sent = _declare(
    "sp_last_error_request_sent", [], ctypes.c_int32, check=False
)

_abi = sp_abi_version()
if _abi != ABI_VERSION:
    raise ImportError(
        "servicepoint: {} has ABI version {}, but this binding was written for ABI version {}".format(
            LIBRARY_PATH, _abi, ABI_VERSION
        )
    )

# Manager.
sp_manager_new = _declare("sp_manager_new", [c_void_p_p])
sp_manager_free = _declare("sp_manager_free", [manager_p], None, check=False)
sp_find = _declare("sp_find", [manager_p, ctypes.c_char_p, c_void_p_p])
sp_find_with_proxy = _declare(
    "sp_find_with_proxy", [manager_p, ctypes.c_char_p, ctypes.c_char_p, c_void_p_p]
)
# Proxies: the manager's proxy, bypass list and environment opt-in; a request's own proxy.
sp_manager_set_proxy = _declare("sp_manager_set_proxy", [manager_p, ctypes.c_char_p])
sp_manager_get_proxy = _declare(
    "sp_manager_get_proxy", [manager_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_manager_set_proxy_bypass = _declare(
    "sp_manager_set_proxy_bypass", [manager_p, ctypes.c_char_p]
)
sp_manager_get_proxy_bypass = _declare(
    "sp_manager_get_proxy_bypass", [manager_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_manager_set_use_environment_proxy = _declare(
    "sp_manager_set_use_environment_proxy", [manager_p, ctypes.c_int32]
)
sp_manager_get_use_environment_proxy = _declare(
    "sp_manager_get_use_environment_proxy", [manager_p, c_int32_p]
)
sp_manager_set_default_connection_limit = _declare(
    "sp_manager_set_default_connection_limit", [manager_p, ctypes.c_int32]
)
sp_manager_get_default_connection_limit = _declare(
    "sp_manager_get_default_connection_limit", [manager_p, c_int32_p]
)
sp_manager_set_max_service_points = _declare(
    "sp_manager_set_max_service_points", [manager_p, ctypes.c_int32]
)
sp_manager_get_max_service_points = _declare(
    "sp_manager_get_max_service_points", [manager_p, c_int32_p]
)
sp_manager_set_max_service_point_idle_time = _declare(
    "sp_manager_set_max_service_point_idle_time", [manager_p, ctypes.c_int32]
)
sp_manager_get_max_service_point_idle_time = _declare(
    "sp_manager_get_max_service_point_idle_time", [manager_p, c_int32_p]
)
sp_manager_set_keep_alive_default = _declare(
    "sp_manager_set_keep_alive_default", [manager_p, ctypes.c_int32]
)
sp_manager_get_keep_alive_default = _declare(
    "sp_manager_get_keep_alive_default", [manager_p, c_int32_p]
)
sp_manager_set_dns_refresh_timeout = _declare(
    "sp_manager_set_dns_refresh_timeout", [manager_p, ctypes.c_int32]
)
sp_manager_get_dns_refresh_timeout = _declare(
    "sp_manager_get_dns_refresh_timeout", [manager_p, c_int32_p]
)
sp_manager_get_service_point_count = _declare(
    "sp_manager_get_service_point_count", [manager_p, c_int32_p]
)

# Logging and metrics.
sp_manager_set_log_callback = _declare(
    "sp_manager_set_log_callback", [manager_p, ctypes.c_int32, sp_log_cb, ctypes.c_void_p]
)
sp_manager_get_log_level = _declare("sp_manager_get_log_level", [manager_p, c_int32_p])
sp_histogram_bound_us = _declare(
    "sp_histogram_bound_us", [ctypes.c_size_t], ctypes.c_uint64, check=False
)
sp_get_histogram = _declare(
    "sp_get_histogram", [point_p, ctypes.c_int32, ctypes.POINTER(sp_histogram)]
)
sp_manager_get_statistics = _declare(
    "sp_manager_get_statistics", [manager_p, ctypes.POINTER(sp_statistics)]
)
sp_manager_get_histogram = _declare(
    "sp_manager_get_histogram", [manager_p, ctypes.c_int32, ctypes.POINTER(sp_histogram)]
)

# TLS options of a manager.
#: typedef int32_t (*sp_cert_validator_cb)(void *userdata, const char *host,
#:     const uint8_t *const *certs, const size_t *cert_lens, size_t count, int32_t builtin_result);
sp_cert_validator_cb = ctypes.CFUNCTYPE(
    ctypes.c_int32,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.POINTER(ctypes.c_void_p),
    c_size_t_p,
    ctypes.c_size_t,
    ctypes.c_int32,
)
sp_manager_add_ca_pem = _declare("sp_manager_add_ca_pem", [manager_p, ctypes.c_char_p, ctypes.c_size_t])
sp_manager_add_ca_file = _declare("sp_manager_add_ca_file", [manager_p, ctypes.c_char_p])
sp_manager_get_ca_count = _declare("sp_manager_get_ca_count", [manager_p, c_int32_p])
sp_manager_set_system_roots = _declare("sp_manager_set_system_roots", [manager_p, ctypes.c_int32])
sp_manager_get_system_roots = _declare("sp_manager_get_system_roots", [manager_p, c_int32_p])
sp_manager_has_client_certificate = _declare(
    "sp_manager_has_client_certificate", [manager_p, c_int32_p]
)
sp_manager_get_min_tls_version = _declare(
    "sp_manager_get_min_tls_version", [manager_p, c_int32_p]
)
sp_manager_has_certificate_validator = _declare(
    "sp_manager_has_certificate_validator", [manager_p, c_int32_p]
)
sp_manager_set_client_certificate = _declare(
    "sp_manager_set_client_certificate",
    [manager_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t],
)
sp_manager_set_min_tls_version = _declare(
    "sp_manager_set_min_tls_version", [manager_p, ctypes.c_int32]
)
sp_manager_set_certificate_validator = _declare(
    "sp_manager_set_certificate_validator", [manager_p, sp_cert_validator_cb, ctypes.c_void_p]
)

# Service point.
sp_point_free = _declare("sp_point_free", [point_p], None, check=False)
sp_get_address = _declare("sp_get_address", [point_p, c_char_p_p])
sp_set_lease_timeout = _declare("sp_set_lease_timeout", [point_p, ctypes.c_int32])
sp_get_lease_timeout = _declare("sp_get_lease_timeout", [point_p, c_int32_p])
sp_set_connection_limit = _declare("sp_set_connection_limit", [point_p, ctypes.c_int32])
sp_get_connection_limit = _declare("sp_get_connection_limit", [point_p, c_int32_p])
sp_set_max_idle_time = _declare("sp_set_max_idle_time", [point_p, ctypes.c_int32])
sp_get_max_idle_time = _declare("sp_get_max_idle_time", [point_p, c_int32_p])
sp_set_max_requests_per_connection = _declare(
    "sp_set_max_requests_per_connection", [point_p, ctypes.c_int32]
)
sp_get_max_requests_per_connection = _declare(
    "sp_get_max_requests_per_connection", [point_p, c_int32_p]
)
# Socket settings of new connections, and a response's descriptor (for getsockopt).
sp_set_receive_buffer_size = _declare("sp_set_receive_buffer_size", [point_p, ctypes.c_int32])
sp_get_receive_buffer_size = _declare("sp_get_receive_buffer_size", [point_p, c_int32_p])
sp_set_send_buffer_size = _declare("sp_set_send_buffer_size", [point_p, ctypes.c_int32])
sp_get_send_buffer_size = _declare("sp_get_send_buffer_size", [point_p, c_int32_p])
sp_set_use_nagle_algorithm = _declare("sp_set_use_nagle_algorithm", [point_p, ctypes.c_int32])
sp_get_use_nagle_algorithm = _declare("sp_get_use_nagle_algorithm", [point_p, c_int32_p])
sp_set_tcp_keep_alive = _declare(
    "sp_set_tcp_keep_alive", [point_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
)
sp_get_tcp_keep_alive = _declare(
    "sp_get_tcp_keep_alive", [point_p, c_int32_p, c_int32_p, c_int32_p]
)
sp_set_local_address = _declare("sp_set_local_address", [point_p, ctypes.c_char_p])
sp_get_local_address = _declare(
    "sp_get_local_address", [point_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_set_connect_timeout = _declare("sp_set_connect_timeout", [point_p, ctypes.c_int32])
sp_set_expect_100_continue = _declare("sp_set_expect_100_continue", [point_p, ctypes.c_int32])
sp_get_expect_100_continue = _declare("sp_get_expect_100_continue", [point_p, c_int32_p])
sp_set_expect_100_continue_timeout = _declare(
    "sp_set_expect_100_continue_timeout", [point_p, ctypes.c_int32]
)
sp_get_expect_100_continue_timeout = _declare(
    "sp_get_expect_100_continue_timeout", [point_p, c_int32_p]
)
sp_set_pipelining = _declare("sp_set_pipelining", [point_p, ctypes.c_int32])
sp_get_pipelining = _declare("sp_get_pipelining", [point_p, c_int32_p])
sp_set_pipeline_depth = _declare("sp_set_pipeline_depth", [point_p, ctypes.c_int32])
sp_get_pipeline_depth = _declare("sp_get_pipeline_depth", [point_p, c_int32_p])
sp_manager_set_enable_dns_round_robin = _declare(
    "sp_manager_set_enable_dns_round_robin", [manager_p, ctypes.c_int32]
)
sp_manager_get_enable_dns_round_robin = _declare(
    "sp_manager_get_enable_dns_round_robin", [manager_p, c_int32_p]
)
sp_manager_set_resolve = _declare(
    "sp_manager_set_resolve", [manager_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_char_p]
)
sp_manager_get_resolve = _declare(
    "sp_manager_get_resolve", [manager_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_manager_set_log_queue = _declare("sp_manager_set_log_queue", [manager_p, queue_p])
sp_manager_has_log_queue = _declare("sp_manager_has_log_queue", [manager_p, c_int32_p])
sp_manager_set_expect_100_continue = _declare(
    "sp_manager_set_expect_100_continue", [manager_p, ctypes.c_int32]
)
sp_manager_get_expect_100_continue = _declare(
    "sp_manager_get_expect_100_continue", [manager_p, c_int32_p]
)
sp_get_connect_timeout = _declare("sp_get_connect_timeout", [point_p, c_int32_p])
sp_manager_set_use_nagle_algorithm = _declare(
    "sp_manager_set_use_nagle_algorithm", [manager_p, ctypes.c_int32]
)
sp_manager_get_use_nagle_algorithm = _declare(
    "sp_manager_get_use_nagle_algorithm", [manager_p, c_int32_p]
)
sp_manager_set_tcp_keep_alive = _declare(
    "sp_manager_set_tcp_keep_alive", [manager_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
)
sp_manager_get_tcp_keep_alive = _declare(
    "sp_manager_get_tcp_keep_alive", [manager_p, c_int32_p, c_int32_p, c_int32_p]
)
sp_response_socket = _declare("sp_response_socket", [response_p, c_int32_p])
sp_get_current_connections = _declare("sp_get_current_connections", [point_p, c_int32_p])
sp_get_idle_since = _declare("sp_get_idle_since", [point_p, c_int64_p])
sp_get_statistics = _declare(
    "sp_get_statistics", [point_p, ctypes.POINTER(sp_statistics)]
)
sp_close_connection_group = _declare(
    "sp_close_connection_group", [point_p, ctypes.c_char_p, c_int32_p]
)
# The read-only facts of a service point (ProtocolVersion, ConnectionName, SupportsPipelining,
# Certificate) and of a response's TLS connection.
sp_get_protocol_version = _declare("sp_get_protocol_version", [point_p, c_int32_p])
sp_get_connection_name = _declare("sp_get_connection_name", [point_p, c_char_p_p])
sp_get_supports_pipelining = _declare("sp_get_supports_pipelining", [point_p, c_int32_p])
#: Copy-out of the DER bytes: (point, uint8_t *buf, size_t cap, size_t *out_len).
sp_get_certificate = _declare(
    "sp_get_certificate", [point_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_response_tls_version = _declare("sp_response_tls_version", [response_p, c_int32_p])
sp_response_tls_cipher_suite = _declare(
    "sp_response_tls_cipher_suite", [response_p, c_char_p_p]
)
sp_response_tls_resumed = _declare("sp_response_tls_resumed", [response_p, c_int32_p])

# Request description.
sp_http_request_new = _declare(
    "sp_http_request_new", [ctypes.c_char_p, ctypes.c_char_p, c_void_p_p]
)
sp_http_request_free = _declare("sp_http_request_free", [request_p], None, check=False)
sp_http_request_add_header = _declare(
    "sp_http_request_add_header", [request_p, ctypes.c_char_p, ctypes.c_char_p]
)
sp_http_request_set_body = _declare(
    "sp_http_request_set_body", [request_p, ctypes.c_void_p, ctypes.c_size_t]
)
sp_http_request_set_body_reader = _declare(
    "sp_http_request_set_body_reader", [request_p, sp_body_read_cb, ctypes.c_void_p]
)
sp_http_request_set_keep_alive = _declare(
    "sp_http_request_set_keep_alive", [request_p, ctypes.c_int32]
)
sp_http_request_set_timeout = _declare("sp_http_request_set_timeout", [request_p, ctypes.c_int32])
sp_http_request_set_read_timeout = _declare(
    "sp_http_request_set_read_timeout", [request_p, ctypes.c_int32]
)
sp_http_request_set_connection_group = _declare(
    "sp_http_request_set_connection_group", [request_p, ctypes.c_char_p]
)
sp_http_request_set_retryable = _declare(
    "sp_http_request_set_retryable", [request_p, ctypes.c_int32]
)
sp_http_request_get_keep_alive = _declare(
    "sp_http_request_get_keep_alive", [request_p, c_int32_p]
)
sp_http_request_get_timeout = _declare("sp_http_request_get_timeout", [request_p, c_int32_p])
sp_http_request_get_read_timeout = _declare(
    "sp_http_request_get_read_timeout", [request_p, c_int32_p]
)
sp_http_request_get_retryable = _declare("sp_http_request_get_retryable", [request_p, c_int32_p])
#: 1 may be pipelined, 0 never, -1 as the service point says (the default).
sp_http_request_set_pipelined = _declare(
    "sp_http_request_set_pipelined", [request_p, ctypes.c_int32]
)
sp_http_request_get_pipelined = _declare("sp_http_request_get_pipelined", [request_p, c_int32_p])
#: The copy-out text getters: (request, char *buf, size_t cap, size_t *out_len), snprintf-style.
sp_http_request_get_connection_group = _declare(
    "sp_http_request_get_connection_group",
    [request_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p],
)
sp_http_request_set_proxy = _declare(
    "sp_http_request_set_proxy", [request_p, ctypes.c_char_p]
)
sp_http_request_get_proxy = _declare(
    "sp_http_request_get_proxy", [request_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_http_request_get_method = _declare(
    "sp_http_request_get_method", [request_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_http_request_get_url = _declare(
    "sp_http_request_get_url", [request_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_request = _declare("sp_request", [manager_p, request_p, c_void_p_p])

# Response.
sp_response_head = _declare("sp_response_head", [response_p, c_char_p_p, c_size_t_p])
sp_response_free = _declare("sp_response_free", [response_p], None, check=False)
sp_response_status = _declare("sp_response_status", [response_p, c_int32_p])
sp_response_http_version = _declare("sp_response_http_version", [response_p, c_int32_p])
sp_response_reason = _declare("sp_response_reason", [response_p, c_char_p_p])
sp_response_header = _declare(
    "sp_response_header", [response_p, ctypes.c_char_p, c_char_p_p]
)
sp_response_header_count = _declare("sp_response_header_count", [response_p, c_size_t_p])
sp_response_header_at = _declare(
    "sp_response_header_at", [response_p, ctypes.c_size_t, c_char_p_p, c_char_p_p]
)
sp_response_trailer = _declare(
    "sp_response_trailer", [response_p, ctypes.c_char_p, c_char_p_p]
)
sp_response_read = _declare(
    "sp_response_read", [response_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p]
)
sp_response_read_all = _declare(
    "sp_response_read_all", [response_p, c_void_p_p, c_size_t_p]
)
sp_response_read_now = _declare(
    "sp_response_read_now",
    [response_p, ctypes.c_void_p, ctypes.c_size_t, c_size_t_p, c_int32_p],
)
sp_response_connection_id = _declare("sp_response_connection_id", [response_p, c_uint64_p])
sp_response_local_port = _declare("sp_response_local_port", [response_p, c_int32_p])
sp_response_connection_reused = _declare(
    "sp_response_connection_reused", [response_p, c_int32_p]
)
sp_response_retried = _declare("sp_response_retried", [response_p, c_int32_p])

# Asynchronous requests and body reads, completion queues, cancel tokens.
sp_request_async = _declare(
    "sp_request_async",
    [manager_p, request_p, sp_response_callback, ctypes.c_void_p, c_void_p_p],
)
sp_request_async_queued = _declare(
    "sp_request_async_queued",
    [manager_p, request_p, queue_p, sp_response_callback, ctypes.c_void_p, c_void_p_p],
)
sp_response_read_async = _declare(
    "sp_response_read_async",
    [response_p, ctypes.c_size_t, sp_read_callback, ctypes.c_void_p, c_void_p_p],
)
sp_response_read_async_queued = _declare(
    "sp_response_read_async_queued",
    [response_p, queue_p, ctypes.c_size_t, sp_read_callback, ctypes.c_void_p, c_void_p_p],
)
sp_operation_cancel = _declare("sp_operation_cancel", [operation_p])
sp_operation_is_done = _declare("sp_operation_is_done", [operation_p, c_int32_p])
sp_operation_free = _declare("sp_operation_free", [operation_p], None, check=False)
sp_completion_queue_new = _declare("sp_completion_queue_new", [c_void_p_p])
sp_completion_queue_fd = _declare("sp_completion_queue_fd", [queue_p, c_int32_p])
sp_completion_queue_run = _declare(
    "sp_completion_queue_run", [queue_p, ctypes.c_size_t, c_size_t_p]
)
sp_completion_queue_len = _declare("sp_completion_queue_len", [queue_p, c_size_t_p])
sp_completion_queue_wait = _declare(
    "sp_completion_queue_wait", [queue_p, ctypes.c_int32, c_int32_p]
)
sp_completion_queue_free = _declare("sp_completion_queue_free", [queue_p], None, check=False)
sp_cancel_token_new = _declare("sp_cancel_token_new", [c_void_p_p])
sp_cancel_token_cancel = _declare("sp_cancel_token_cancel", [token_p])
sp_cancel_token_reset = _declare("sp_cancel_token_reset", [token_p])
sp_cancel_token_is_canceled = _declare("sp_cancel_token_is_canceled", [token_p, c_int32_p])
sp_cancel_token_wakeup_fd = _declare("sp_cancel_token_wakeup_fd", [token_p, c_int32_p])
sp_cancel_token_free = _declare("sp_cancel_token_free", [token_p], None, check=False)
sp_http_request_set_cancel_token = _declare(
    "sp_http_request_set_cancel_token", [request_p, token_p]
)


def library_version() -> str:
    """The library's version string, e.g. ``"servicepoint/0.1.0"``."""
    return _decode(sp_version())


def strerror(code: int) -> str:
    """The library's fixed text for a result code."""
    return _decode(sp_strerror(code))


# --- small helpers shared by the wrapper classes ------------------------------------------

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def to_i32(value: Any, what: str) -> int:
    """Checks that ``value`` is an integer that fits int32_t (ctypes would silently
    truncate), raising OutOfRangeError (a ValueError) if not and TypeError for non-ints."""
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError("{} must be an int, not {}".format(what, type(value).__name__)) from None
    if not _INT32_MIN <= number <= _INT32_MAX:
        raise errors.OutOfRangeError(4, "{} {} does not fit in int32_t".format(what, number))
    return number


#: The longest finite duration the C ABI takes: int32_t milliseconds.
MAX_SECONDS = _INT32_MAX / 1000.0


def to_ms(seconds: Optional[float], what: str) -> int:
    """A duration of the Python API (seconds as int or float; None = no limit) -> the C ABI's
    int32_t milliseconds (-1 = infinite). Rounds up, so a tiny positive duration is not 0.
    Raises TypeError for a non-number, OutOfRangeError (a ValueError) for a negative, NaN or
    too large one. ``math.inf`` is taken as None."""
    if seconds is None:
        return SP_INFINITE
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            "{} must be a number of seconds or None, not {}".format(what, type(seconds).__name__)
        )
    value = float(seconds)
    if value == math.inf:
        return SP_INFINITE
    if math.isnan(value) or value < 0:
        raise errors.OutOfRangeError(
            4, "{} must be >= 0 seconds, or None for no limit (got {!r})".format(what, seconds)
        )
    ms = math.ceil(value * 1000.0)
    if ms > _INT32_MAX:
        raise errors.OutOfRangeError(
            4,
            "{} {!r} s is more than the library takes ({} s); use None for no limit".format(
                what, seconds, MAX_SECONDS
            ),
        )
    return int(ms)


def from_ms(ms: int) -> Optional[float]:
    """The C ABI's int32_t milliseconds -> seconds (float); -1 (infinite) -> None."""
    if ms < 0:
        return None
    return ms / 1000.0


def out_handle(pointer: ctypes.c_void_p, what: str) -> int:
    """The handle a successful call wrote to an out-parameter (never NULL on SP_OK)."""
    if not pointer.value:
        raise errors.PanicError(22, "{} returned SP_OK but no handle".format(what))
    return int(pointer.value)


def encode(text: Any, what: str) -> bytes:
    """str -> UTF-8 bytes for a ``const char *`` argument (bytes pass through)."""
    if isinstance(text, str):
        data = text.encode("utf-8")
    elif isinstance(text, (bytes, bytearray)):
        data = bytes(text)
    else:
        raise TypeError("{} must be str or bytes, not {}".format(what, type(text).__name__))
    if b"\0" in data:
        raise errors.InvalidArgumentError(1, "{} contains a NUL character".format(what))
    return data


def get_text(getter: Any, handle: Any) -> str:
    """A copy-out text getter (``sp_http_request_get_url`` and its kind) as a str: asks for
    the length, then copies into a buffer of that size."""
    length = ctypes.c_size_t()
    getter(handle, None, 0, ctypes.byref(length))
    buf = ctypes.create_string_buffer(length.value + 1)
    getter(handle, buf, len(buf), ctypes.byref(length))
    return buf.value.decode("utf-8")


def decode_field(raw: Optional[bytes]) -> str:
    """Decodes a header/trailer field from the wire: UTF-8 if valid, else ISO-8859-1
    (as http.client does), so no byte is lost."""
    if not raw:
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")
