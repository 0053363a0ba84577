"""Jupyter: a real kernel (ipykernel) driven by a real client (nbclient), one kernel per notebook;
assertions on each cell's outputs: stream name, exact text, order within each stream."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def run_notebook(cells: list[str], *kernel_args: str) -> list[dict[str, Any]]:
    """Execute the cells in one fresh kernel; per cell: {"stdout": text, "stderr": text, "error": ename}."""
    results = []
    for outputs in execute(cells, *kernel_args)[0]:
        seen: dict[str, Any] = {"stdout": "", "stderr": ""}
        for output in outputs:
            if output["output_type"] == "stream":
                seen[output["name"]] += output["text"]
            elif output["output_type"] == "error":
                seen["error"] = output["ename"]
        results.append(seen)
    return results


def execute(cells: list[str], *kernel_args: str) -> tuple[list[list[dict[str, Any]]], list[Any]]:
    """Execute the cells in one fresh kernel. Returns each cell's outputs in order (type, stream
    name, text, data, error name; consecutive stream outputs of one name merged, as a notebook
    shows them), and the outputs each ipywidgets ``Output`` received, in creation order."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = nbclient.NotebookClient(
        notebook,
        timeout=30,
        kernel_name="python3",
        allow_errors=True,
        extra_arguments=list(kernel_args),
    )
    client.execute()
    widgets = [state["outputs"] for state in client.widget_state.values() if "outputs" in state]
    return [merged(cell.outputs) for cell in notebook.cells], widgets


def merged(outputs: list[Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for output in outputs:
        kept = {key: output[key] for key in ("output_type", "name", "text", "data", "ename") if key in output}
        previous = result[-1] if result else None
        if previous and kept["output_type"] == "stream" and previous.get("name", None) == kept.get("name", ""):
            previous["text"] += kept["text"]
        else:
            result.append(kept)
    return result


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


# Pure-Python cells: with the extension loaded, the kernel must show exactly what it shows without.
PYTHON_CELLS = [
    "from IPython.display import HTML, clear_output, display\nprint('a'); display(HTML('x')); print('b')",
    "for i in range(3):\n    print(i); display(i)",
    "print('p')\n42",
    "print('p')\nraise ValueError('v')",
    "import sys\nfor i in range(5):\n"
    "    clear_output(wait=True)\n    print(f'step {i}')\n    print(i, file=sys.stderr)",
    "%%capture cap\nprint('inside')\ndisplay('shown inside')",
    "print(repr(cap.stdout)); cap.show()",
    "get_ipython().run_cell('print(1)');",
    "import ipywidgets\nout = ipywidgets.Output()\ndisplay(out)\nwith out:\n    print('x')\n"
    "@out.capture()\ndef f():\n    print('decorated')\nf()\nprint('cell')",
    "h = display('one', display_id=True)\nprint('mid')\nh.update('two')",
    "%%time\nprint('t')",
    "%%timeit -n1 -r1\nprint('x')",
    "import asyncio\nasync def later():\n    await asyncio.sleep(0.2)\n    print('from the task')\n"
    "task = asyncio.ensure_future(later())",
    "await asyncio.sleep(0.4)\nprint('after the task')",
    "import pathlib, tempfile\nscript = pathlib.Path(tempfile.mkdtemp()) / 'script.ipy'\n"
    "script.write_text('print(\"in the script\")\\n%time 1\\n')\nget_ipython().run_line_magic('run', str(script))",
    "%rerun -l 1",
    "print(type(sys.stdout).__name__, type(sys.stderr).__name__)\nsys.stdout.write = sys.stdout.write",
    "print('end')",
]


def comparable(outputs: object) -> str:
    """Outputs as text, without what differs between any two runs: addresses, ids, timings."""
    text = json.dumps(outputs)
    text = re.sub(r"\b[0-9a-f]{32}\b", "ID", text)
    text = re.sub(r"(at |0x)[0-9a-f]{6,16}", "ADDRESS", text)
    return re.sub(r"[0-9][0-9.e+]* (\\u03bc|\\u00b5|n|m)?s\b", "TIME", text)


def test_python_output_is_the_kernels(kernel_env: None) -> None:
    without = execute(["pass", *PYTHON_CELLS])
    with_extension = execute([SETUP, *PYTHON_CELLS])
    assert comparable(with_extension[0][1:]) == comparable(without[0][1:])
    assert comparable(with_extension[0]).count("in the script\\nCPU times") == 2  # %run, then %rerun
    assert comparable(with_extension[1]) == comparable(without[1])
    assert with_extension[1] == [[{"output_type": "stream", "name": "stdout", "text": "x\ndecorated\n"}]]


def stream(name: str, text: str) -> dict[str, str]:
    return {"output_type": "stream", "name": name, "text": text}


def shown(data: str) -> dict[str, Any]:
    return {"output_type": "display_data", "data": {"text/plain": data}}


def test_native_output_at_each_synchronisation_point(kernel_env: None) -> None:
    cells, widgets = execute(
        [
            SETUP + "\nfrom IPython.display import clear_output, display",
            "for i in range(3):\n    c_printf(f'c {i}\\n', flush=True)\n    display(i)",
            "c_printf('before the result\\n')\n42",
            "c_write(2, 'before the traceback\\n')\nraise ValueError('v')",
            "for i in range(5):\n    clear_output(wait=True)\n    c_printf(f'step {i}\\n')\n    display(i)",
            "%%capture cap\nc_printf('native inside\\n', flush=True)\nprint('python inside')\nc_printf('unflushed\\n')",
            "print(repr(cap.stdout))",
            "from IPython.utils.capture import capture_output\nwith capture_output() as io:\n"
            "    c_printf('native\\n', flush=True)\n    print('python')\nprint(repr(io.stdout))",
            "import ipywidgets\nout = ipywidgets.Output()\nwith out:\n    c_printf('to the widget\\n', flush=True)\n"
            "c_printf('to the cell\\n', flush=True);",
            "c_write(1, 'written '); print('then printed')",
            "from fdredirect import redirect_stdout_fd\nwith redirect_stdout_fd() as block:\n"
            "    print('py'); c_printf('c\\n')\nprint(repr(block.getvalue()))",
            "import sys\nkernel_stdout, sys.stdout = sys.stdout, sys.__stdout__\n"
            "print('through fd 1', flush=True)\nc_write(1, 'native\\n')\nsys.stdout = kernel_stdout\nprint('back')",
            "print('after')",
            # Native text delivered without its newline (by the background thread, during the
            # sleep) is not Python text: the next Python line still starts with a sync point.
            "import time\nc_write(1, 'partial'); time.sleep(0.5); c_write(1, ' rest\\n'); print('back')",
        ]
    )
    (_setup, displays, result, failing, progress, capture, captured, context, widget, write, block) = cells[:11]
    real, after, partial = cells[11:]
    assert displays == [
        stream("stdout", "c 0\n"),
        shown("0"),
        stream("stdout", "c 1\n"),
        shown("1"),
        stream("stdout", "c 2\n"),
        shown("2"),
    ]
    assert result[0] == stream("stdout", "before the result\n")
    assert result[1]["output_type"] == "execute_result"
    assert failing[0] == stream("stderr", "before the traceback\n")
    assert failing[1]["ename"] == "ValueError"
    assert progress == [stream("stdout", "step 4\n"), shown("4")]
    assert capture == []
    assert captured == [stream("stdout", "'native inside\\npython inside\\nunflushed\\n'\n")]
    assert context == [stream("stdout", "'native\\npython\\n'\n")]
    assert widgets == [[stream("stdout", "to the widget\n")]]
    assert widget == [stream("stdout", "to the cell\n")]
    assert write == [stream("stdout", "written then printed\n")]
    assert block == [stream("stdout", "'py\\nc\\n'\n")]
    # sys.stdout set to the real fd 1, which leads back into the redirect: the kernel's stream
    # takes that output instead of feeding it back forever.
    assert real == [stream("stdout", "through fd 1\nnative\nback\n")]
    assert after == [stream("stdout", "after\n")]
    assert "".join(message["text"] for message in partial) == "partial rest\nback\n"


# matplotlib's inline backend publishes a figure as display_data from plt.show(), synchronously.
MATPLOTLIB_CELLS = [
    "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
    "print('py before')\nplt.plot([1, 2]); plt.show()\nprint('py after')",
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nfrom fdredirect.testing import c_printf\n"
    "c_printf('c before\\n', flush=True)\nprint('py before')\nplt.plot([1, 2]); plt.show()\n"
    "print('py after')\nc_printf('c unflushed\\n');",
]
NATIVE_TEXTS = ("c before\n", "c unflushed\n")


def without_native(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outputs with the C text taken out: without the extension the kernel's own fd capture
    places it anywhere in the cell (or later, or never), so only the rest can be compared."""
    kept = []
    for output in outputs:
        if output["output_type"] == "stream":
            text = output["text"]
            for native in NATIVE_TEXTS:
                text = text.replace(native, "")
            output = {**output, "text": text}
            if not text:
                continue
        kept.append(output)
    return merged(kept)


def test_matplotlib_inline_with_native_output(kernel_env: None) -> None:
    pytest.importorskip("matplotlib")
    # A first import may build the font cache and say so on stderr: let that happen in cell 0.
    warm = "import matplotlib.font_manager"
    without = execute([warm, *MATPLOTLIB_CELLS])[0]
    python, native = execute([SETUP + "\n" + warm, *MATPLOTLIB_CELLS])[0][1:]
    assert comparable(python) == comparable(without[1])
    assert [output["output_type"] for output in python] == ["stream", "display_data", "stream"]
    assert "image/png" in python[1]["data"]
    assert comparable(without_native(native)) == comparable(without_native(without[2]))
    # The flushed C text before the figure, the unflushed one at the end of the cell.
    assert native == [stream("stdout", "c before\npy before\n"), python[1], stream("stdout", "py after\nc unflushed\n")]


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
    assert cells[2]["stdout"] == "OutStream\n"  # the kernel's own stream, loaded or not
    assert cells[4]["stdout"] == "OutStream\n"
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
