#!/usr/bin/env python3
"""Generates the ABI misuse cases from include/servicepoint.h.

    gen_abi_misuse.py HEADER OUTPUT.c [--summary]

Reads every sp_ function prototype of the header (cbindgen output: comments, then one
declaration each) and writes a C file of cases for abi_misuse_runner.c (see abi_misuse.h):
for each function and each parameter, calls with that parameter misused and every other one
valid. Misuse by parameter type (TYPE_RULES below):

  handle (struct sp_X *)      NULL, a freed handle of the kind, forged values (small integer,
                              -16, the address of a C object, a live handle + 8), and a live
                              handle of every other kind        -> SP_E_INVALID_HANDLE
                              (_free functions: ignored, and every live handle survives)
  out-parameter (T *out_x)    NULL -> SP_E_NULL_POINTER
  const char *                NULL -> SP_E_NULL_POINTER; invalid UTF-8 -> SP_E_INVALID_UTF8
  const uint8_t * / uint8_t * NULL (with a valid length) -> SP_E_NULL_POINTER
  char * (a text buffer out)  as uint8_t *: NULL with a valid length -> SP_E_NULL_POINTER,
                              and untouched on failure
  size_t after a buffer       (size_t)-1 and PTRDIFF_MAX + 1 with a valid small buffer
                              -> SP_E_INVALID_ARGUMENT, buffer untouched
  size_t index                (size_t)-1 and PTRDIFF_MAX + 1 -> SP_E_OUT_OF_RANGE
  int32_t                     INT32_MIN, INT32_MAX, -2 -> anything but a crash
  void *userdata              NULL and a forged value -> accepted (opaque, never dereferenced)
  callback typedef            NULL -> SP_E_NULL_POINTER; a valid dummy -> SP_OK

Every failing call must leave sp_last_error() a non-empty NUL-terminated string and every
out-parameter (pre-filled with 0xA5 bytes) unchanged. Functions returning a string must
return a non-NULL NUL-terminated one. EXCEPTIONS lists the parameters the header documents as
accepting one of these values.

Fails (exit 1, message on stderr) on anything it does not know how to misuse: an unknown
parameter or return type, an out-parameter not named out_*, a size_t that is neither a buffer
length nor an index, a handle kind without a fixture, a declaration it cannot parse. A new
function therefore either gets its misuse cases or breaks the build.
"""
import re
import sys

# Handle kinds: the fixture field that holds a live one, the runner's maker of a freed one,
# and the free function. Every opaque `typedef struct sp_X sp_X;` in the header must be here.
HANDLE_KINDS = {
    "sp_manager": ("f->manager", "am_freed_manager(f)", "sp_manager_free"),
    "sp_point": ("f->point", "am_freed_point(f)", "sp_point_free"),
    "sp_http_request": ("f->request", "am_freed_request(f)", "sp_http_request_free"),
    "sp_response": ("f->response", "am_freed_response(f)", "sp_response_free"),
    "sp_operation": ("f->operation", "am_freed_operation(f)", "sp_operation_free"),
    "sp_completion_queue": ("f->queue", "am_freed_queue(f)", "sp_completion_queue_free"),
    "sp_cancel_token": ("f->token", "am_freed_token(f)", "sp_cancel_token_free"),
}

# Out-parameter pointee types (after `T *out_x`) the generator can pre-fill and compare.
OUT_TYPES = {
    "int32_t", "uint32_t", "int64_t", "uint64_t", "size_t",
    "const char *", "const uint8_t *", "struct sp_statistics", "struct sp_histogram",
}
# Out structs whose first field is the struct_size the caller sets.
SIZED_STRUCTS = {"struct sp_statistics", "struct sp_histogram"}

# Valid values of string parameters, by name; others get "x".
VALID_STRINGS = {
    "uri": "am_url()",
    "url": "am_url()",
    "method": '"GET"',
    "value": '"v"',
    "address": '"127.0.0.1"',
}
VALID_STRINGS_BY_FUNC = {
    ("sp_http_request_add_header", "name"): '"X-Misuse"',
    ("sp_response_header", "name"): '"Content-Length"',
    ("sp_response_trailer", "name"): '"X-Trailer"',
    ("sp_close_connection_group", "name"): '""',
    ("sp_http_request_set_connection_group", "name"): '"misuse"',
    ("sp_manager_add_ca_file", "path"): '"/nonexistent/servicepoint-abi-misuse.pem"',
    ("sp_manager_set_resolve", "host"): '"misuse.invalid"',
    ("sp_manager_set_resolve", "addresses"): '"127.0.0.1,::1"',
}
INVALID_UTF8 = [
    ("\\xff\\xfe", '"\\xff\\xfe"'),
    ("overlong \\xc0\\xaf", '"\\xc0\\xaf"'),
    ("surrogate \\xed\\xa0\\x80", '"\\xed\\xa0\\x80"'),
    ("truncated \\xe2\\x82 at the end", '"GET\\xe2\\x82"'),
]

# Valid values of int32_t parameters, by name; others get 1.
VALID_INT32 = {
    "limit": "2",
    "max": "0",
    "ms": "100000",
    "on": "1",
    "version": "SP_TLS_1_2",
    "code": "SP_E_INVALID_ARGUMENT",
    "level": "SP_LOG_INFO",
    "which": "SP_METRIC_QUEUE_WAIT",
}
INT32_EXTREMES = [("INT32_MIN", "INT32_MIN"), ("INT32_MAX", "INT32_MAX"), ("-2", "-2")]

HUGE_SIZES = [
    ("(size_t)-1", "(size_t)-1"),
    ("PTRDIFF_MAX + 1", "(size_t)PTRDIFF_MAX + 1"),
]
# Valid length of the buffer a size_t follows.
VALID_BUFFER_LEN = 16

# (function, parameter) -> misuse -> expected code, where the header documents an exception.
EXCEPTIONS = {
    # "*out_existed (may be NULL)"
    ("sp_close_connection_group", "out_existed"): {"NULL": "SP_OK"},
    # "or removes it with NULL"
    ("sp_manager_set_certificate_validator", "validator"): {"NULL": "SP_OK"},
    # "SP_E_INVALID_UTF8 (name)": header values may be any bytes but CR/LF (obs-text).
    ("sp_http_request_add_header", "value"): {"utf8": "SP_OK"},
    # "a NULL callback turns logging off"
    ("sp_manager_set_log_callback", "callback"): {"NULL": "SP_OK"},
    # "NULL or "" lets the system choose"
    ("sp_set_local_address", "address"): {"NULL": "SP_OK"},
    # "NULL: none, the default"
    ("sp_http_request_set_cancel_token", "token"): {"NULL": "SP_OK"},
    # "NULL removes the pin"
    ("sp_manager_set_resolve", "addresses"): {"NULL": "SP_OK"},
    # "NULL delivers directly again"
    ("sp_manager_set_log_queue", "queue"): {"NULL": "SP_OK"},
    # "NULL or "" for direct connections"
    ("sp_manager_set_proxy", "url"): {"NULL": "SP_OK"},
    # "NULL for the manager's settings"
    ("sp_http_request_set_proxy", "url"): {"NULL": "SP_OK"},
    # "NULL for the manager's proxy settings"
    ("sp_find_with_proxy", "proxy"): {"NULL": "SP_OK"},
}

RETURN_TYPES = {"sp_result", "void", "const char *", "uint32_t", "int32_t", "uint64_t"}


class GenError(Exception):
    pass


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("#"))


def norm_type(t):
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\s*\*\s*", " *", t).replace(" * *", " **")
    t = re.sub(r"\*\s+(?=\*)", "*", t)
    return t.strip()


def split_param(p):
    p = norm_type(p)
    m = re.match(r"^(.*?[\s\*])([A-Za-z_]\w*)$", p)
    if not m:
        raise GenError(f"cannot split parameter {p!r}")
    return norm_type(m.group(1)), m.group(2)


def parse_header(text):
    src = strip_comments(text)
    kinds = set(re.findall(r"typedef\s+struct\s+(sp_\w+)\s+\1\s*;", src))
    callbacks = {}
    for ret, name, params in re.findall(
            r"typedef\s+([\w\s\*]+?)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^()]*)\)\s*;", src):
        callbacks[name] = (norm_type(ret), [split_param(p) for p in params.split(",")])
    functions = []
    for ret, name, params in re.findall(
            r"(?m)^[ \t]*([A-Za-z_][\w \t\*]*?[\s\*])(sp_\w+)\s*\(([^()]*)\)\s*;", src):
        params = params.strip()
        plist = [] if params in ("", "void") else [split_param(p) for p in params.split(",")]
        functions.append((norm_type(ret), name, plist))
    # Every `sp_name (` must have been parsed (function pointer typedefs read `(*sp_name)(`).
    declared = set(re.findall(r"\b(sp_\w+)\s*\(", src))
    parsed = {f[1] for f in functions}
    if declared - parsed:
        raise GenError("declarations not parsed: " + ", ".join(sorted(declared - parsed)))
    if not functions:
        raise GenError("no sp_ function found")
    return kinds, callbacks, functions


def classify(func, params, i, kinds, callbacks):
    """What parameter i is: (category, detail)."""
    t, name = params[i]
    m = re.match(r"^(?:const )?struct (sp_\w+) \*$", t)
    if m and m.group(1) in kinds:
        return "handle", m.group(1)
    if name.startswith("out_"):
        if not t.endswith("*"):
            raise GenError(f"{func}: out-parameter {name} is not a pointer ({t})")
        pointee = norm_type(t[:-1])
        m = re.match(r"^struct (sp_\w+) \*$", pointee)
        if m and m.group(1) in kinds:
            return "out_handle", m.group(1)
        if pointee not in OUT_TYPES:
            raise GenError(f"{func}: out-parameter {name} of unknown type {t!r}")
        return "out", pointee
    if t == "const char *":
        return "string", None
    if t in ("const uint8_t *", "uint8_t *", "char *"):
        return ("in_buffer" if t.startswith("const") else "out_buffer"), t
    if t == "size_t":
        if i > 0 and params[i - 1][0] in ("const uint8_t *", "uint8_t *", "char *"):
            return "length", params[i - 1][1]
        if name == "index":
            return "index", None
        if name == "max":
            return "count", None
        raise GenError(f"{func}: size_t {name} is neither a buffer length nor an index")
    if t == "int32_t" and name == "timeout_ms":
        return "wait_ms", None
    if t == "int32_t":
        return "int32", None
    if t == "void *":
        return "userdata", None
    if t in callbacks:
        return "callback", t
    raise GenError(f"{func}: parameter {name} of type {t!r}: no misuse rule for this type")


def c_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gen:
    def __init__(self, kinds, callbacks, functions):
        self.kinds = kinds
        self.callbacks = callbacks
        self.functions = functions
        self.cases = []  # (func, param, misuse, body lines)
        unknown = kinds - set(HANDLE_KINDS)
        if unknown:
            raise GenError("handle kinds without a fixture in HANDLE_KINDS (and in "
                           "abi_misuse_runner.c): " + ", ".join(sorted(unknown)))

    def dummy_name(self, cb):
        return "am_dummy_" + cb

    def valid(self, func, params, i, cat, detail):
        """Declaration lines and the argument expression of the valid value of param i."""
        t, name = params[i]
        v = f"a{i}"
        if cat == "handle":
            return [f"{t}{v} = {HANDLE_KINDS[detail][0]};"], v
        if cat in ("out", "out_handle"):
            pointee = norm_type(t[:-1])
            decl = f"{pointee} {v}" if not pointee.endswith("*") else f"{pointee}{v}"
            lines = [f"{decl};", f"memset(&{v}, 0xA5, sizeof {v});"]
            if pointee in SIZED_STRUCTS:
                lines.append(f"{v}.struct_size = (uint32_t)sizeof {v};")
            lines.append(f"{decl}_before;")
            lines.append(f"memcpy(&{v}_before, &{v}, sizeof {v});")
            return lines, f"&{v}"
        if cat == "string":
            s = VALID_STRINGS_BY_FUNC.get((func, name), VALID_STRINGS.get(name, '"x"'))
            return [f"const char *{v} = {s};"], v
        if cat == "in_buffer":
            return [f"const uint8_t *{v} = am_guard_buf({VALID_BUFFER_LEN}, 'x');"], v
        if cat == "out_buffer":
            return [f"{t}{v} = ({t})am_guard_buf({VALID_BUFFER_LEN}, 0xA5);"], v
        if cat == "length":
            return [f"size_t {v} = {VALID_BUFFER_LEN};"], v
        if cat == "index":
            return [f"size_t {v} = 0;"], v
        if cat == "count":
            return [f"size_t {v} = 16;"], v
        if cat == "int32":
            return [f"int32_t {v} = {VALID_INT32.get(name, '1')};"], v
        if cat == "wait_ms":
            return [f"int32_t {v} = 0;"], v
        if cat == "userdata":
            return [f"void *{v} = &am_userdata;"], v
        if cat == "callback":
            return [f"{t} {v} = {self.dummy_name(detail)};"], v
        raise GenError(f"{func}: no valid value for {cat}")

    def misuses(self, func, params, i, cat, detail):
        """(label, expression, expected code, exception key) for param i."""
        t, name = params[i]
        out = []
        if cat == "handle":
            want = "SP_E_INVALID_HANDLE"
            out.append(("NULL", "NULL", want, "NULL"))
            out.append((f"freed {detail}", HANDLE_KINDS[detail][1], want, "freed"))
            out.append(("forged 0x1234", f"({t})(uintptr_t)0x1234", want, "forged"))
            out.append(("forged -16", f"({t})(uintptr_t)-16", want, "forged"))
            out.append(("forged address of a C object",
                        f"({t})(void *)am_foreign_object", want, "forged"))
            out.append((f"forged live {detail} + 8",
                        f"({t})((uintptr_t){HANDLE_KINDS[detail][0]} + 8)", want, "forged"))
            for other in sorted(self.kinds - {detail}):
                out.append((f"live {other} (wrong kind)",
                            f"({t})(void *){HANDLE_KINDS[other][0]}", want, "wrong_kind"))
        elif cat in ("out", "out_handle", "in_buffer", "out_buffer"):
            out.append(("NULL", "NULL", "SP_E_NULL_POINTER", "NULL"))
        elif cat == "string":
            out.append(("NULL", "NULL", "SP_E_NULL_POINTER", "NULL"))
            for lab, lit in INVALID_UTF8:
                out.append((f"invalid UTF-8 {lab}", lit, "SP_E_INVALID_UTF8", "utf8"))
        elif cat == "length":
            for lab, e in HUGE_SIZES:
                out.append((lab, e, "SP_E_INVALID_ARGUMENT", "huge"))
        elif cat == "index":
            for lab, e in HUGE_SIZES:
                out.append((lab, e, "SP_E_OUT_OF_RANGE", "huge"))
        elif cat == "count":
            # 0 is refused where nothing could be done (a read of 0 bytes) and legal elsewhere;
            # huge counts are legal (clamped): no crash, no hang, whatever the code.
            for lab, e in [("0", "0")] + HUGE_SIZES:
                out.append((lab, e, "AM_NO_CHECK", "count"))
        elif cat == "wait_ms":
            # A wait: only values below -1 are misuse (a large one would just wait).
            out.append(("-2", "-2", "SP_E_OUT_OF_RANGE", "wait_ms"))
            out.append(("INT32_MIN", "INT32_MIN", "SP_E_OUT_OF_RANGE", "wait_ms"))
        elif cat == "int32":
            for lab, e in INT32_EXTREMES:
                out.append((lab, e, "AM_NO_CHECK", "int32"))
        elif cat == "userdata":
            out.append(("NULL", "NULL", "SP_OK", "NULL"))
            out.append(("forged 0x1234", "(void *)(uintptr_t)0x1234", "SP_OK", "forged"))
        elif cat == "callback":
            out.append(("NULL", "NULL", "SP_E_NULL_POINTER", "NULL"))
            out.append(("valid dummy callback", self.dummy_name(detail), "SP_OK", "dummy"))
        exc = EXCEPTIONS.get((func, name), {})
        return [(lab, e, exc.get(key, want)) for lab, e, want, key in out]

    def case_body(self, ret, func, params, cats, mi, mexpr, want):
        lines = []
        args = []
        for i, (t, name) in enumerate(params):
            cat, detail = cats[i]
            decl, arg = self.valid(func, params, i, cat, detail)
            if i == mi:
                # Keep the pre-filled out-parameter (compared below) but pass the misuse.
                if cat in ("out", "out_handle"):
                    lines += decl
                elif cat == "out_buffer":
                    lines += decl
                    lines.append(f"(void)a{i};")
                arg = mexpr
            else:
                lines += decl
            args.append(arg)
        call = f"{func}({', '.join(args)})"
        if ret == "sp_result":
            lines.append(f"sp_result rc = {call};")
            lines.append(f"am_check_rc(rc, {want});")
            fail_checks = ["am_check_last_error();"]
            for i, (t, name) in enumerate(params):
                cat, detail = cats[i]
                if cat in ("out", "out_handle"):
                    fail_checks.append(
                        f'am_check_unchanged(&a{i}, &a{i}_before, sizeof a{i}, "{name}");')
                if cat == "out_buffer":
                    fail_checks.append(
                        f'am_check_filled((const uint8_t *)a{i}, {VALID_BUFFER_LEN}, 0xA5, "{name}");')
            lines.append("if (rc != SP_OK) {")
            lines += ["    " + c for c in fail_checks]
            lines.append("}")
            # A call that wrongly succeeded may have issued a handle: free it.
            for i, (t, name) in enumerate(params):
                cat, detail = cats[i]
                if cat == "out_handle" and i != mi:
                    lines.append(f"if (rc == SP_OK && memcmp(&a{i}, &a{i}_before, sizeof a{i}))")
                    lines.append(f"    {HANDLE_KINDS[detail][2]}(a{i});")
        elif ret == "void":
            lines.append(f"{call};")
        elif ret == "const char *":
            lines.append(f"const char *r = {call};")
            lines.append(f'am_check_cstr(r, "the returned string");')
        else:  # integers: nothing to check but that it returns
            lines.append(f"(void){call};")
        return lines

    def run(self):
        for ret, func, params in self.functions:
            if ret not in RETURN_TYPES:
                raise GenError(f"{func}: unknown return type {ret!r}")
            cats = [classify(func, params, i, self.kinds, self.callbacks)
                    for i in range(len(params))]
            if not params:
                self.cases.append((func, "-", "no parameters",
                                   self.case_body(ret, func, params, cats, -1, None, None)))
                continue
            for i, (t, name) in enumerate(params):
                for lab, expr, want in self.misuses(func, params, i, *cats[i]):
                    self.cases.append((func, name, lab,
                                       self.case_body(ret, func, params, cats, i, expr, want)))

    def dummies(self):
        out = []
        for name, (ret, params) in sorted(self.callbacks.items()):
            if ret not in ("int32_t", "void"):
                raise GenError(f"callback {name}: unknown return type {ret!r}")
            ps = ", ".join(f"{t}{'' if t.endswith('*') else ' '}{n}" for t, n in params)
            out.append(f"static {ret} {self.dummy_name(name)}({ps}) {{")
            for t, n in params:
                out.append(f"    (void){n};")
            if ret != "void":
                out.append("    return 0;")
            out.append("}")
            out.append("")
        return out

    def emit(self):
        o = [
            "/* Generated by tests/c/gen_abi_misuse.py from include/servicepoint.h: do not edit,",
            " * do not commit. One function per misuse case; see abi_misuse.h. */",
            "#include \"abi_misuse.h\"",
            "",
            "#include <stddef.h>",
            "#include <stdint.h>",
            "#include <string.h>",
            "",
        ]
        o += self.dummies()
        for n, (func, param, misuse, body) in enumerate(self.cases):
            o.append(f"/* {func}: {param} = {misuse} */")
            o.append(f"static void case_{n}(am_fixture *f) {{")
            o.append("    (void)f;")
            o += ["    " + l for l in body]
            o.append("}")
            o.append("")
        o.append("const am_case am_cases[] = {")
        for n, (func, param, misuse, _) in enumerate(self.cases):
            o.append(f"    {{{c_str(func)}, {c_str(param)}, {c_str(misuse)}, case_{n}}},")
        o.append("};")
        o.append(f"const size_t am_case_count = {len(self.cases)};")
        o.append(f"const size_t am_function_count = {len(self.functions)};")
        return "\n".join(o) + "\n"


def main(argv):
    if len(argv) not in (3, 4) or (len(argv) == 4 and argv[3] != "--summary"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        header = fh.read()
    try:
        kinds, callbacks, functions = parse_header(header)
        gen = Gen(kinds, callbacks, functions)
        gen.run()
        text = gen.emit()
    except GenError as e:
        print(f"gen_abi_misuse.py: {argv[1]}: {e}", file=sys.stderr)
        return 1
    with open(argv[2], "w", encoding="utf-8") as fh:
        fh.write(text)
    if len(argv) == 4:
        per = {}
        for func, *_ in gen.cases:
            per[func] = per.get(func, 0) + 1
        for func, n in per.items():
            print(f"{n:4d}  {func}")
        print(f"{len(functions)} functions, {len(gen.cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
