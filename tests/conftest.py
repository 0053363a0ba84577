"""Shared helpers: a child-interpreter runner (fd behaviour is tested in fresh processes whose
real output we inspect), an open-fd counter, and the C++/Fortran emitters built at test time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# On CI every emitter must be built: a missing compiler is a failure, not a skip.
ON_CI = os.environ.get("CI") == "true"


@dataclass
class Child:
    returncode: int
    out: bytes
    err: bytes


def run_child(
    code: str, *, unbuffered: bool = True, env: dict[str, str] | None = None, timeout: float = 120, **kwargs: object
) -> Child:
    """Run ``code`` in a fresh interpreter with stdout and stderr on pipes; return what reached them."""
    child_env = dict(os.environ)
    child_env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        child_env["PYTHONUNBUFFERED"] = "1"
    child_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        env=child_env,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    return Child(done.returncode, done.stdout, done.stderr)


def run_ok(code: str, **kwargs: object) -> Child:
    """``run_child`` that fails the test (showing the child's stderr) unless the child exits 0."""
    child = run_child(code, **kwargs)  # type: ignore[arg-type]
    assert child.returncode == 0, child.err.decode(errors="replace")
    return child


@pytest.fixture(params=[True, False], ids=["PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED-unset"])
def unbuffered(request: pytest.FixtureRequest) -> bool:
    """Both ways: PYTHONUNBUFFERED=1 makes libc's stdout unbuffered and hides missing flushes."""
    return bool(request.param)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Emitters:
    cxx: Path
    fortran: Path


def _build(compiler: str, source: Path, target: Path, *flags: str) -> None:
    if shutil.which(compiler) is None:
        message = f"{compiler} is not installed (apt-get install {compiler})"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", *flags, str(source), "-o", str(target)], check=True)


@pytest.fixture(scope="session")
def emitters(tmp_path_factory: pytest.TempPathFactory) -> Emitters:
    """C++ and Fortran writers as separate shared objects, built once per session."""
    native = Path(__file__).parent / "native"
    out = tmp_path_factory.mktemp("emitters")
    cxx, fortran = out / "libemit_cxx.so", out / "libemit_fortran.so"
    _build("g++", native / "emit_cxx.cpp", cxx)
    _build("gfortran", native / "emit_fortran.f90", fortran)
    return Emitters(cxx, fortran)
