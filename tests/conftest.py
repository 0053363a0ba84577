"""Fixtures: PYTHONUNBUFFERED both ways, and the C++/Fortran emitters built at test time. The
helpers to run a child interpreter live in ``helpers``; they are re-exported here for test files
that still import them from ``conftest``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import Child, Emitters, open_fds, run_child, run_ok

__all__ = ["Child", "Emitters", "open_fds", "run_child", "run_ok"]

pytest_plugins = ["pytester"]

# On CI every emitter must be built: a missing compiler is a failure, not a skip.
ON_CI = os.environ.get("CI") == "true"


@pytest.fixture(params=[True, False], ids=["PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED-unset"])
def unbuffered(request: pytest.FixtureRequest) -> bool:
    """Both ways: PYTHONUNBUFFERED=1 makes libc's stdout unbuffered and hides missing flushes."""
    return bool(request.param)


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
