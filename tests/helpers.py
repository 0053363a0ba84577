"""Parent-side helpers: run code in a fresh child interpreter (fd behaviour is tested in processes
whose real output we inspect), read back what the child reported, count this process's open fds,
and a logger that only collects its records (a live target).

Children find the modules in this directory (``childlib``, ``stress_child``) on their PYTHONPATH."""

from __future__ import annotations

import ast
import importlib
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).parent
# Whole child programs, run by path (``run_file``).
CHILDREN = TESTS / "children"


@dataclass
class Child:
    returncode: int
    out: bytes
    err: bytes


@dataclass
class Emitters:
    """The C++ and Fortran writers built at test time (the ``emitters`` fixture)."""

    cxx: Path
    fortran: Path


def child_env(unbuffered: bool, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with PYTHONUNBUFFERED set or unset as asked (never inherited: it
    hides missing flushes) and this directory on PYTHONPATH; ``env`` on top."""
    merged = dict(os.environ)
    merged.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        merged["PYTHONUNBUFFERED"] = "1"
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), merged.get("PYTHONPATH")]))
    merged.update(env or {})
    return merged


def _run(
    argv: Sequence[str], unbuffered: bool, env: dict[str, str] | None, timeout: float, kwargs: dict[str, object]
) -> Child:
    done = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        env=child_env(unbuffered, env),
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    return Child(done.returncode, done.stdout, done.stderr)


def run_child(
    code: str,
    *,
    unbuffered: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    argv: Sequence[str] = (),
    **kwargs: object,
) -> Child:
    """Run ``code`` (with ``argv`` as its ``sys.argv[1:]``) in a fresh interpreter with stdout and
    stderr on pipes; return what reached them."""
    return _run(["-c", textwrap.dedent(code), *argv], unbuffered, env, timeout, kwargs)


def run_ok(code: str, **kwargs: object) -> Child:
    """``run_child`` that fails the test (showing the child's stderr) unless the child exits 0."""
    return _ok(run_child(code, **kwargs))  # type: ignore[arg-type]


def run_file(
    name: str,
    *args: object,
    unbuffered: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    **kwargs: object,
) -> Child:
    """Run the program ``children/<name>`` with ``args`` (as strings), as ``run_child`` runs code."""
    return _run([str(CHILDREN / name), *map(str, args)], unbuffered, env, timeout, kwargs)


def run_file_ok(name: str, *args: object, **kwargs: object) -> Child:
    """``run_file`` that fails the test (showing the child's stderr) unless the child exits 0."""
    return _ok(run_file(name, *args, **kwargs))  # type: ignore[arg-type]


def _ok(child: Child) -> Child:
    assert child.returncode == 0, child.err.decode(errors="replace")
    return child


def last_report(child: Child) -> Any:
    """The value the child passed last to ``childlib.report`` (the last line of its stderr)."""
    return ast.literal_eval(child.err.decode().strip().splitlines()[-1])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Lines(logging.Handler):
    """Collects records without writing anywhere."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def quiet_logger(name: str) -> tuple[logging.Logger, Lines]:
    """The logger ``name``, reset to send every record to a ``Lines`` handler only."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Lines()
    logger.handlers[:] = [handler]
    return logger, handler


def start_kernel(unbuffered: bool, startup_timeout: float) -> tuple[Any, Any]:
    """A Jupyter kernel (``python3``) and a blocking client, PYTHONUNBUFFERED set or unset on
    purpose; retried twice, as a parallel start can take the port a kernel picked."""
    # Imported by name, here: only the kernel tests need it (they skip without it), and the type
    # checks of these helpers run where it is not installed.
    manager: Any = importlib.import_module("jupyter_client.manager")
    env = child_env(unbuffered)
    for attempt in range(3):
        try:
            return manager.start_new_kernel(  # type: ignore[no-any-return]
                startup_timeout=startup_timeout, kernel_name="python3", env=env
            )
        except RuntimeError:  # "Kernel died before replying": a port taken by a parallel start
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
