"""``import fdredirect`` stays cheap (issue 14): heavy modules are imported only when a feature needs
them. Checked in fresh interpreters, since this test process has them all loaded already."""

from __future__ import annotations

import ast

import pytest

from conftest import run_ok

# What ``import fdredirect`` used to pull in, and must not any more.
LAZY = ["IPython", "fdredirect.ipython", "logging", "subprocess", "inspect", "typing", "functools", "re"]


def _imported_by(*lines: str) -> list[str]:
    """The LAZY modules that ``lines`` import, in a fresh interpreter."""
    code = ["import sys", "before = set(sys.modules)", *lines]
    code.append("print(sorted(set(sys.modules) - before))")  # json would import re first
    child = run_ok("\n".join(code), timeout=60)
    new = ast.literal_eval(child.out.decode())
    return [name for name in LAZY if name in new]


def test_import_loads_none_of_the_heavy_modules() -> None:
    assert _imported_by("import fdredirect") == []


def test_a_capture_block_loads_none_of_them() -> None:
    lines = ["import fdredirect", "with fdredirect.redirect_stdout_fd() as out:", "    print('x')"]
    assert _imported_by(*lines, "assert out.getvalue() == 'x\\n'") == []


def test_the_special_targets_equal_subprocess_constants() -> None:
    import subprocess

    import fdredirect

    assert (fdredirect.DEVNULL, fdredirect.STDOUT) == (subprocess.DEVNULL, subprocess.STDOUT)


def test_a_logger_imported_after_fdredirect_is_still_a_logger_target() -> None:
    child = run_ok(
        """
        import fdredirect, fdredirect.testing
        import logging, sys
        logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s", level=logging.INFO)
        with fdredirect.redirect_stderr_fd(logging.getLogger("lib")):
            fdredirect.testing.c_write(2, b"native\\n")
        """,
        timeout=60,
    )
    assert child.out == b"WARNING native\n"


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_the_decorator_imports_what_it_needs_when_used(kind: str) -> None:
    child = run_ok(
        f"""
        import asyncio, fdredirect
        @fdredirect.redirect_stdout_fd(fdredirect.DEVNULL)
        {kind} quiet():
            print("hidden")
            return 7
        result = quiet()
        print(asyncio.run(result) if asyncio.iscoroutine(result) else result)
        """,
        timeout=60,
    )
    assert child.out == b"7\n"


def test_the_extension_entry_points_import_the_extension_when_called() -> None:
    child = run_ok(
        """
        import sys, fdredirect
        assert "fdredirect.ipython" not in sys.modules
        fdredirect.load_ipython_extension(object())  # no kernel: a message, nothing else
        fdredirect.unload_ipython_extension(object())
        print("fdredirect.ipython" in sys.modules)
        """,
        timeout=60,
    )
    assert child.out.endswith(b"True\n")
    assert b"no Jupyter kernel" in child.out
