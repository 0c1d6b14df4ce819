"""Builds the Rust library and bundles it in the package.

``pip install ./bindings/python`` and ``pip wheel bindings/python`` run
``cargo build --release --locked --lib`` in the repository (the crate is two directories up)
and copy the cdylib (libservicepoint.so) into the ``servicepoint`` package, where
``servicepoint._native`` loads it. The library is a C ABI loaded with ctypes, not a Python
extension module, so the wheel is tagged ``py3-none-<platform>``: any Python 3, this
platform. The metadata is in pyproject.toml; this file only adds the build step.

Environment: ``CARGO`` (the cargo to run, default ``cargo``), ``CARGO_TARGET_DIR`` (honoured by
cargo), ``SERVICEPOINT_CARGO_PROFILE`` (``release``, the default, or ``dev`` for a quick
unoptimised build), ``SERVICEPOINT_NO_STRIP`` (set: keep the debug info in the bundled copy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - older setuptools with the wheel package
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent.parent
LIBRARY_NAMES = ("libservicepoint.so", "libservicepoint.dylib", "servicepoint.dll")


def build_library() -> Path:
    """Runs cargo and returns the path of the built cdylib (as cargo reports it)."""
    manifest = CRATE / "Cargo.toml"
    if not manifest.is_file():
        sys.exit(
            "servicepoint: {} not found; build the package from the servicepoint repository "
            "(bindings/python), where the Rust crate is".format(manifest)
        )
    profile = os.environ.get("SERVICEPOINT_CARGO_PROFILE", "release")
    cmd: List[str] = [
        os.environ.get("CARGO", "cargo"), "build", "--locked", "--lib",
        "--profile", profile, "--manifest-path", str(manifest),
        "--message-format=json-render-diagnostics",
    ]
    print("servicepoint: " + " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=str(CRATE), stdout=subprocess.PIPE, check=False)
    except FileNotFoundError:
        sys.exit("servicepoint: cargo not found; install Rust (https://rustup.rs) to build")
    if proc.returncode != 0:
        sys.exit("servicepoint: cargo build failed (exit {})".format(proc.returncode))
    found: List[Path] = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        target = msg.get("target", {})
        if target.get("name") != "servicepoint" or "cdylib" not in target.get("kind", []):
            continue
        found += [Path(f) for f in msg.get("filenames", []) if Path(f).name in LIBRARY_NAMES]
    if not found:
        sys.exit("servicepoint: cargo built no cdylib named one of {}".format(LIBRARY_NAMES))
    return found[0]


class BuildPyWithLibrary(build_py):
    """build_py, plus the Rust library copied into the built package."""

    def run(self) -> None:
        super().run()
        library = build_library()
        package = Path(self.build_lib) / "servicepoint"
        package.mkdir(parents=True, exist_ok=True)
        for stale in package.glob("libservicepoint*"):
            stale.unlink()
        # copyfile follows symlinks: the wheel gets the file itself.
        bundled = package / library.name
        shutil.copyfile(str(library), str(bundled))
        # The release profile keeps debug info (for backtraces in the repository's builds);
        # the bundled copy does not need it (22 MB -> about 2 MB).
        strip = shutil.which("strip")
        if strip and sys.platform.startswith("linux") and not os.environ.get("SERVICEPOINT_NO_STRIP"):
            subprocess.run([strip, "--strip-debug", str(bundled)], check=False)
        print("servicepoint: bundled {} as {}".format(library, bundled), flush=True)


class BinaryDistribution(Distribution):
    """The package carries a native library: install to platlib, wheel not pure."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """Tags the wheel ``py3-none-<platform>``: the library does not use the Python C API."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):  # type: ignore[no-untyped-def]
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
)
