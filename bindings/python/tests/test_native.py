"""The ctypes layer: every header function declared, codes mapped, loader behaviour."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import servicepoint
from servicepoint import _native, errors

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = Path(servicepoint.__file__).resolve().parent



def _find_header() -> Path:
    """include/servicepoint.h of the repository holding these tests ($SERVICEPOINT_HEADER
    overrides)."""
    env = os.environ.get("SERVICEPOINT_HEADER")
    if env:
        return Path(env)
    for parent in HERE.parents:
        candidate = parent / "include" / "servicepoint.h"
        if candidate.is_file():
            return candidate
    return HERE / "servicepoint.h-not-found"


HEADER = _find_header()


def _header_text() -> str:
    if not HEADER.exists():
        pytest.skip("include/servicepoint.h not found (tests run outside the source tree)")
    text = HEADER.read_text(encoding="utf-8")
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)  # comments mention functions too
    return re.sub(r"//[^\n]*", " ", text)


def _declarations() -> Dict[str, Tuple[str, List[str]]]:
    """name -> (return type, [parameter types]) of every function prototype."""
    found: Dict[str, Tuple[str, List[str]]] = {}
    proto = re.compile(r"([A-Za-z_][\w \t\*]*?)\b(sp_\w+)\s*\(([^()]*)\)\s*;", re.S)
    for match in proto.finditer(_header_text()):
        ret = " ".join(match.group(1).split())
        params = [" ".join(p.split()) for p in match.group(3).split(",")]
        if params == ["void"]:
            params = []
        found[match.group(2)] = (ret, params)
    return found


def test_header_names_found() -> None:
    names = set(re.findall(r"\b(sp_\w+)\s*\(", _header_text()))
    assert "sp_request" in names and "sp_manager_new" in names
    # Every `sp_xxx(` in the header (comments stripped) is a prototype we parsed.
    assert names == set(_declarations())


def test_every_header_function_is_declared() -> None:
    names = set(re.findall(r"\b(sp_\w+)\s*\(", _header_text()))
    missing = sorted(names - set(_native.FUNCTIONS))
    assert not missing, "functions in the header but not declared in the binding: {}".format(missing)
    extra = sorted(set(_native.FUNCTIONS) - names)
    assert not extra, "declared but not in the header: {}".format(extra)


_SCALARS = {
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "sp_result": ctypes.c_int32,
    "const char *": ctypes.c_char_p,
}


def test_only_quick_functions_keep_the_gil() -> None:
    for name in ("sp_request", "sp_response_read", "sp_response_read_all", "sp_response_free"):
        assert _native.FUNCTIONS[name] is getattr(_native.lib, name)
    assert _native.FUNCTIONS["sp_response_status"] is getattr(_native._quick, name := "sp_response_status"), name


def test_declarations_match_prototypes() -> None:
    for name, (ret, params) in _declarations().items():
        func = _native.FUNCTIONS[name]
        # Blocking functions release the GIL (CDLL); quick ones keep it (PyDLL).
        library = _native.lib if name in _native._RELEASE_GIL else _native._quick
        assert func is getattr(library, name)
        assert func.argtypes is not None, name
        assert len(func.argtypes) == len(params), (name, func.argtypes, params)
        if ret == "void":
            assert func.restype is None, name
        else:
            assert func.restype is _SCALARS[ret], (name, ret, func.restype)
        # Fallible functions raise through errcheck; infallible ones must not have one.
        has_check = getattr(func, "errcheck", None) is _native._check
        assert has_check == (ret == "sp_result"), name
        for ctype, param in zip(func.argtypes, params):
            if param.startswith("const struct sp_") or param.startswith("struct sp_"):
                if param.count("*") == 1 and not any(
                    s in param for s in ("sp_statistics", "sp_histogram")
                ):
                    assert ctype is ctypes.c_void_p, (name, param)  # opaque handle
            elif param in _SCALARS:
                assert ctype is _SCALARS[param], (name, param, ctype)


def test_every_error_code_is_mapped() -> None:
    codes = {
        name: int(value)
        for name, value in re.findall(r"\b(SP_E_\w+)\s*=\s*(\d+)", _header_text())
    }
    assert len(codes) >= 25
    for name, value in codes.items():
        cls = errors.error_class(value)
        assert cls is not errors.ServicePointError, name
        assert cls.code_name == name, (name, cls)
        assert issubclass(cls, errors.ServicePointError)
    assert set(errors.ERROR_CODES) == set(codes.values())
    assert errors.error_class(999) is errors.ServicePointError


def test_error_class_hierarchy() -> None:
    assert issubclass(servicepoint.InvalidArgumentError, ValueError)
    assert issubclass(servicepoint.OutOfRangeError, ValueError)
    assert issubclass(servicepoint.ConnectError, ConnectionError)
    for cls in (
        servicepoint.ConnectTimeoutError,
        servicepoint.QueueTimeoutError,
        servicepoint.ResponseTimeoutError,
        servicepoint.ReadTimeoutError,
    ):
        assert issubclass(cls, TimeoutError)  # the builtin
        assert issubclass(cls, servicepoint.ServicePointTimeoutError)
    err = errors.error_from_code(9, "connect 127.0.0.1:1: refused", True, "sp_request")
    assert isinstance(err, servicepoint.ConnectError)
    assert (err.code, str(err), err.request_sent, err.function) == (
        9,
        "connect 127.0.0.1:1: refused",
        True,
        "sp_request",
    )
    assert err.errno is None  # not confused with an OS errno
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and again.code == 9 and again.request_sent


def test_abi_and_version() -> None:
    header_abi = re.search(r"#define\s+SP_ABI_VERSION\s+(\d+)", _header_text())
    assert header_abi is not None
    assert int(header_abi.group(1)) == servicepoint.ABI_VERSION == _native.sp_abi_version()
    assert servicepoint.library_version().startswith("servicepoint/")
    assert _native.strerror(9)


def test_invalid_handle_raises() -> None:
    with pytest.raises(servicepoint.InvalidHandleError) as info:
        _native.sp_set_connection_limit(0x1234560, 3)
    assert info.value.code == 5 and str(info.value)
    with pytest.raises(servicepoint.InvalidHandleError):
        _native.sp_set_connection_limit(None, 3)
    _native.sp_point_free(0x1234560)  # ignored, never a crash
    _native.sp_response_free(None)


def test_last_error_is_read_per_thread() -> None:
    """errcheck reads the failing thread's own message, even while another thread fails
    differently at the same time."""
    barrier = threading.Barrier(2, timeout=10)
    results: Dict[str, set] = {}

    def fail(kind: str) -> None:
        barrier.wait()
        seen = set()
        for _ in range(300):
            try:
                if kind == "url":
                    out = ctypes.c_void_p()
                    _native.sp_http_request_new(b"GET", b"ftp://x/", ctypes.byref(out))
                else:
                    _native.sp_set_connection_limit(0x1234560, 1)
            except servicepoint.ServicePointError as exc:
                seen.add((type(exc).__name__, "ftp" in str(exc), "handle" in str(exc)))
        results[kind] = seen

    threads = [threading.Thread(target=fail, args=(k,)) for k in ("url", "handle")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results["url"] == {("UnsupportedSchemeError", True, False)}
    assert results["handle"] == {("InvalidHandleError", False, True)}


def _run_isolated(code: str, env: Dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=30,
    )


def _clean_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SERVICEPOINT_LIB", "CARGO_TARGET_DIR")}
    env["PYTHONPATH"] = ""
    return env


def test_missing_library_gives_clear_import_error(tmp_path: Path) -> None:
    shutil.copytree(str(PACKAGE_DIR), str(tmp_path / "pkg" / "servicepoint"),
                    ignore=shutil.ignore_patterns("*.so", "*.so.*", "*.dylib", "*.dll", "__pycache__"))
    env = _clean_env()
    env["LD_LIBRARY_PATH"] = ""
    proc = _run_isolated(
        """
        try:
            import servicepoint
        except ImportError as exc:
            print("IMPORTERROR", exc)
        """,
        env,
        tmp_path / "pkg",
    )
    out = proc.stdout
    if "IMPORTERROR" not in out:
        pytest.skip("libservicepoint is installed system-wide (find_library found it)")
    assert "SERVICEPOINT_LIB" in out
    assert str(tmp_path / "pkg" / "servicepoint" / _native.LIBRARY_FILE) in out
    assert "target" in out and "find_library" in out


def test_source_tree_finds_the_build_dir() -> None:
    if len(PACKAGE_DIR.parents) < 3 or not (PACKAGE_DIR.parents[2] / "Cargo.toml").is_file():
        pytest.skip("not running from the source tree")
    proc = _run_isolated(
        "import servicepoint; print(servicepoint.LIBRARY_PATH)", _clean_env(), PACKAGE_DIR.parent
    )
    if proc.returncode != 0 and "cannot find" in proc.stderr:
        pytest.skip("no cargo build output in target/")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.parent.parent == PACKAGE_DIR.parents[2] / "target"
    assert path.parent.name in ("release", "debug")


def test_bad_env_path_gives_import_error(tmp_path: Path) -> None:
    env = _clean_env()
    env["SERVICEPOINT_LIB"] = str(tmp_path / "nope" / "libservicepoint.so")
    proc = _run_isolated(
        """
        try:
            import servicepoint
        except ImportError as exc:
            print("IMPORTERROR", exc)
        """,
        env,
        PACKAGE_DIR.parent,
    )
    assert "IMPORTERROR" in proc.stdout, proc.stderr
    assert str(tmp_path / "nope") in proc.stdout


def test_abi_mismatch_gives_import_error(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build a fake library")
    src = tmp_path / "fake.c"
    src.write_text(
        "#include <stdint.h>\n"
        "uint32_t sp_abi_version(void) { return 999; }\n"
        "const char *sp_version(void) { return \"fake\"; }\n"
        "const char *sp_strerror(int32_t c) { (void)c; return \"\"; }\n"
        "const char *sp_last_error(void) { return \"\"; }\n"
        "int32_t sp_last_error_request_sent(void) { return 0; }\n"
    )
    lib = tmp_path / "libfake.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=60)
    env = _clean_env()
    env["SERVICEPOINT_LIB"] = str(lib)
    proc = _run_isolated(
        """
        try:
            import servicepoint
        except ImportError as exc:
            print("IMPORTERROR", exc)
        """,
        env,
        PACKAGE_DIR.parent,
    )
    assert "IMPORTERROR" in proc.stdout, proc.stderr
    assert "999" in proc.stdout and "ABI" in proc.stdout


def test_abi_2_getters_read_what_setters_set() -> None:
    """ABI 2: every setter has a getter, so the binding keeps no shadow copies."""
    with servicepoint.ServicePointManager() as manager:
        assert manager.system_roots is True
        manager.system_roots = False
        assert manager.system_roots is False
        assert manager.min_tls_version == "1.2"
        manager.min_tls_version = "1.3"
        assert manager.min_tls_version == "1.3"
        assert manager.ca_count == 0
        assert manager.has_client_certificate is False
        assert manager.has_certificate_validator is False
        manager.set_certificate_validator(lambda host, chain, code: True)
        assert manager.has_certificate_validator is True
        manager.set_certificate_validator(None)
        assert manager.has_certificate_validator is False
        manager.max_service_point_idle_time = 1.234
        assert manager.max_service_point_idle_time == 1.234

    handle = ctypes.c_void_p()
    _native.sp_http_request_new(b"POST", b"HTTP://Example.COM:80/a?b#f", ctypes.byref(handle))
    try:
        assert _native.get_text(_native.sp_http_request_get_method, handle) == "POST"
        assert _native.get_text(_native.sp_http_request_get_url, handle) == "http://example.com/a?b"
        assert _native.get_text(_native.sp_http_request_get_connection_group, handle) == ""
        value = ctypes.c_int32()
        _native.sp_http_request_get_keep_alive(handle, ctypes.byref(value))
        assert value.value == -1
        _native.sp_http_request_get_timeout(handle, ctypes.byref(value))
        assert value.value == 100000
        _native.sp_http_request_set_read_timeout(handle, -1)
        _native.sp_http_request_get_read_timeout(handle, ctypes.byref(value))
        assert value.value == -1
        _native.sp_http_request_set_connection_group(handle, b"g")
        assert _native.get_text(_native.sp_http_request_get_connection_group, handle) == "g"
    finally:
        _native.sp_http_request_free(handle)


def test_connection_reset_has_its_own_class() -> None:
    cls = errors.error_class(30)
    assert cls is servicepoint.ServicePointConnectionResetError
    assert issubclass(cls, servicepoint.ConnectionClosedError)
    assert issubclass(cls, ConnectionResetError)
    assert _native.strerror(30) == "connection reset by the server"
    assert _native.strerror(31) == "proxy authentication required (407)"
    assert _native.strerror(33) == "unknown result code"


def test_statistics_layout_matches_the_header() -> None:
    assert ctypes.sizeof(_native.sp_statistics) == 8 + 23 * 8
    assert _native.sp_statistics.reserved.offset == 4
    assert _native.sp_statistics.closed_in_flight.offset == 8 + 19 * 8
    assert _native.sp_statistics.closed_address_gone.offset == 8 + 20 * 8
    assert _native.sp_statistics.pipelined.offset == 8 + 21 * 8
    assert _native.sp_statistics.pipeline_replays.offset == ctypes.sizeof(_native.sp_statistics) - 8
