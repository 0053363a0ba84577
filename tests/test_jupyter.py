"""Jupyter: a real kernel (ipykernel) driven by a real client (nbclient), one kernel per notebook;
assertions on each cell's outputs: stream name, exact text, order within each stream."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def run_notebook(cells: list[str], *kernel_args: str) -> list[dict[str, Any]]:
    """Execute the cells in one fresh kernel; per cell: {"stdout": text, "stderr": text, "error": ename}."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        extra_arguments=list(kernel_args),
    )
    client.execute()
    results = []
    for cell in notebook.cells:
        seen: dict[str, Any] = {"stdout": "", "stderr": ""}
        for output in cell.outputs:
            if output.output_type == "stream":
                seen[output.name] += output.text
            elif output.output_type == "error":
                seen["error"] = output.ename
        results.append(seen)
    return results


SETUP = "%load_ext fdredirect\nfrom fdredirect.testing import c_printf, c_write, c_fprintf_stderr, c_emit"


@pytest.fixture(params=[True, False], ids=["PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED-unset"])
def kernel_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel inherits the environment: run with libc's stdout unbuffered and buffered."""
    if request.param:
        monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    else:
        monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)


@pytest.mark.parametrize("kernel_args", [(), ("--IPKernelApp.capture_fd_output=False",)], ids=["fd-capture-on", "off"])
def test_native_output_lands_in_its_cell_in_order(kernel_env: None, kernel_args: tuple[str, ...]) -> None:
    cells = run_notebook(
        [
            SETUP,
            "for i in range(50):\n"
            "    print(f'py {i}')\n"
            "    c_printf(f'c {i}\\n', flush=True)\n"
            "    c_fprintf_stderr(f'e {i}\\n')\n"
            "c_printf('unflushed at the end of the cell\\n');",
            "import os\nos.system('echo from a child process');",
            "print('only this')",
            "c_printf('before the error\\n')\nraise KeyError('boom')",
            "print('after the error')",
            "c_emit(1, 10_000_000, hold_gil=True)\nprint('done')",
        ],
        *kernel_args,
    )
    _setup, loop, child, plain, failing, after, bulk = cells
    expected = "".join(f"py {i}\nc {i}\n" for i in range(50)) + "unflushed at the end of the cell\n"
    assert loop["stdout"] == expected
    assert loop["stderr"] == "".join(f"e {i}\n" for i in range(50))
    assert child["stdout"] == "from a child process\n"
    assert plain == {"stdout": "only this\n", "stderr": ""}
    assert failing["stdout"] == "before the error\n"
    assert failing["error"] == "KeyError"
    assert after == {"stdout": "after the error\n", "stderr": ""}
    assert len(bulk["stdout"]) == 10_000_000 + len("done\n")
    assert bulk["stdout"].endswith("done\n")


def test_unload_and_load_twice() -> None:
    cells = run_notebook(
        [
            SETUP,
            "%load_ext fdredirect",
            "import sys\nprint(type(sys.stdout).__name__)",
            "%unload_ext fdredirect",
            "import sys\nprint(type(sys.stdout).__name__)",
        ]
    )
    assert cells[2]["stdout"] == "FdWriter\n"  # the cell's print goes through fd 1, in order
    assert cells[4]["stdout"] == "OutStream\n"  # the kernel's own stream again
    assert "error" not in cells[1]


def test_capture_block_inside_a_cell_without_the_extension() -> None:
    cells = run_notebook(
        [
            "from fdredirect import redirect_stdout_fd\nfrom fdredirect.testing import c_printf\n"
            "with redirect_stdout_fd() as out:\n"
            "    print('py')\n"
            "    c_printf('c\\n')\n"
            "print(repr(out.getvalue()))",
        ]
    )
    assert cells[0]["stdout"] == "'py\\nc\\n'\n"


def test_terminal_ipython_is_left_alone() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--quick", "-c", "%load_ext fdredirect"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "no Jupyter kernel here; native output already reaches the terminal" in done.stdout
