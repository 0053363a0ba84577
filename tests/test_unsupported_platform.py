"""Where fdredirect has no fd core (Windows; issue 13): the package imports, every redirect raises
``NotImplementedError`` naming the platform before touching anything, and the pytest plugin, the
Jupyter extension and the demo say so once and do nothing else.

The children run with ``unsupported_platform/`` on their PYTHONPATH: its ``sitecustomize`` puts a
stand-in with the names of src/unsupported.rs's module in place of ``fdredirect._native`` (the
first two tests keep the two in step). The real module was checked by hand, see docs/platforms.md.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from helpers import TESTS, Child, last_report, run_child, run_ok

STAND_IN = TESTS / "unsupported_platform"
RUST = TESTS.parent / "src" / "unsupported.rs"
ENV = {"PYTHONPATH": os.pathsep.join([str(STAND_IN), str(TESTS)])}


def _stand_in_reason() -> str:
    for node in ast.parse((STAND_IN / "unsupported_native.py").read_text()).body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets if isinstance(target, ast.Name)] == [
            "UNSUPPORTED"
        ]:
            return str(ast.literal_eval(node.value))
    raise AssertionError("the stand-in has no UNSUPPORTED")


REASON = _stand_in_reason()


def run_unsupported(code: str, **kwargs: object) -> Child:
    return run_child(code, env=ENV, timeout=60, **kwargs)  # type: ignore[arg-type]


def run_unsupported_ok(code: str, **kwargs: object) -> Child:
    return run_ok(code, env=ENV, timeout=60, **kwargs)


def test_the_stand_in_has_the_names_of_the_rust_module() -> None:
    rust = RUST.read_text()
    module = rust[rust.index("fn native_module") :]
    names = set(re.findall(r'm\.add\("(\w+)"', module))
    names |= set(re.findall(r"add_class::<(\w+)>", module))
    names |= set(re.findall(r"wrap_pyfunction!\((\w+),", module))
    assert names == {
        "__version__",
        "UNSUPPORTED",
        "Redirect",
        "Redirects",
        "Captured",
        "flush_all",
        "shutdown",
        "__getattr__",
    }
    tree = ast.parse((STAND_IN / "unsupported_native.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    defined |= {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert defined == names


def test_the_stand_in_gives_the_reason_of_the_rust_module_on_windows() -> None:
    rust = RUST.read_text()
    template = re.search(r'format!\(\s*"(fdredirect does not support .*?)",?\s*\)', rust, re.DOTALL)
    assert template is not None
    # A Rust string's backslash-newline drops the newline and the next line's indentation.
    text = re.sub(r"\\\n\s*", "", template.group(1))
    assert re.search(r'"windows" => "Windows"', rust)
    assert text.replace("{platform}", "Windows") == REASON


def test_the_package_imports_without_fork() -> None:
    # Windows has neither os.fork nor os.register_at_fork.
    child = run_unsupported_ok(
        """
        import os
        del os.fork, os.register_at_fork
        import fdredirect, fdredirect.ipython, fdredirect.pytest_plugin, fdredirect.testing
        from childlib import report
        fdredirect.flush_all()
        report([name for name in fdredirect.__all__ if not hasattr(fdredirect, name)])
        """
    )
    assert last_report(child) == []
    assert child.out == b""


def test_every_redirect_raises_naming_the_platform_before_touching_anything(tmp_path: Path) -> None:
    path = tmp_path / "never created"
    child = run_unsupported_ok(
        f"""
        import io, os, sys
        import fdredirect
        from fdredirect import STDOUT, redirect_fds, redirect_stderr_fd, redirect_stdout_fd
        from childlib import report

        def state():
            return (sys.stdout, sys.stderr, os.fstat(1), os.fstat(2), sorted(os.listdir("/proc/self/fd")))

        before = state()
        attempts = [
            lambda: redirect_stdout_fd(),
            lambda: redirect_stderr_fd({str(path)!r}),
            lambda: redirect_stdout_fd(io.StringIO(), tee=True),
            lambda: redirect_stderr_fd(STDOUT),
            lambda: redirect_fds(),
            lambda: redirect_fds(stderr=STDOUT),
            lambda: redirect_stdout_fd(print, lines=True),
        ]
        seen = []
        for attempt in attempts:
            try:
                attempt()
            except NotImplementedError as error:
                seen.append(str(error))
        # The Python-side argument checks still come first, as everywhere.
        try:
            redirect_stdout_fd(tee="yes")
        except TypeError as error:
            seen.append("TypeError: " + str(error))
        try:
            fdredirect.testing.c_printf("x")
        except AttributeError as error:
            seen.append("AttributeError: " + str(error))
        report((seen, state() == before))
        """
    )
    seen, unchanged = last_report(child)
    assert seen[:7] == [REASON] * 7
    assert seen[7] == "TypeError: tee must be a bool, not str"
    assert seen[8] == f"AttributeError: module 'fdredirect._native' has no attribute 'c_printf': {REASON}"
    assert len(seen) == 9
    assert unchanged
    assert not path.exists()
    assert child.out == b""


def test_the_demo_says_so_and_exits_1() -> None:
    child = run_unsupported("import runpy; runpy.run_module('fdredirect', run_name='__main__')")
    assert child.returncode == 1
    assert child.out == b""
    assert child.err.decode() == f"{REASON}. The demo has nothing to show.\n"


EXTENSION_LINE = f"{REASON}. Native output is not captured on this platform: the extension does nothing.\n"


def test_the_extension_prints_one_line_and_does_nothing_else() -> None:
    child = run_unsupported_ok(
        """
        import os, sys
        import fdredirect
        from childlib import report

        class Untouchable:
            def __getattr__(self, name):
                raise AssertionError(f"the extension used shell.{name}")

        class Shell:  # a kernel's shell, as far as the extension looks
            kernel = object()
            events = Untouchable()

        def state():
            wrapped = [vars(stream).get(name) for stream in (sys.stdout, sys.stderr) for name in ("write", "flush")]
            return (sys.stdout, sys.stderr, wrapped, os.fstat(1), os.fstat(2), sorted(os.listdir("/proc/self/fd")))

        before = state()
        fdredirect.load_ipython_extension(Shell())
        sys.stdout.flush()
        fdredirect.unload_ipython_extension(Shell())
        report((state() == before, fdredirect.ipython._CURRENT))
        """
    )
    assert last_report(child) == (True, None)
    assert child.out.decode() == EXTENSION_LINE


def test_load_ext_in_a_kernel_prints_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # the kernel inherits it
    sources = [
        "%load_ext fdredirect",
        # The kernel's streams, with no synchronisation point of the extension on them.
        "import sys; from fdredirect.ipython import _Synced\n"
        "attributes = [*vars(sys.stdout).values(), *vars(sys.stderr).values()]\n"
        "print(type(sys.stdout).__module__, any(isinstance(a, _Synced) for a in attributes))",
        "%unload_ext fdredirect",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=True).execute()
    outputs = [[(output.get("name"), output.get("text")) for output in cell.outputs] for cell in notebook.cells]
    assert outputs == [[("stdout", EXTENSION_LINE)], [("stdout", "ipykernel.iostream False\n")], []]


PLUGIN_TESTS = """
import os
import pytest

def test_capall(capall):
    raise AssertionError("not run")

def test_capallbinary(capallbinary):
    raise AssertionError("not run")

@pytest.mark.capall(tee=True)
def test_capall_from_a_fixture(request):
    request.getfixturevalue("capall")
    raise AssertionError("not run")

def test_conflict(capall, capfd):
    raise AssertionError("not run")

def test_without(capfd):
    print("py")
    os.write(2, b"fd\\n")
    assert capfd.readouterr() == ("py\\n", "fd\\n")
"""


def test_the_pytest_plugin_skips_its_fixtures_and_says_so_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # the inner pytest inherits it
    # A cross-platform suite's configuration is still accepted, and no warning is raised.
    pytester.makeini("[pytest]\nfilterwarnings = error\ncapall_tee = true\nfdredirect_flush = true\n")
    pytester.makepyfile(PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-rs", "--strict-markers", "--capall-merged", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3, errors=1)  # capall with capfd: still an error
    header = f"{REASON}. The fdredirect plugin is off: capall/capallbinary skip their tests."
    assert result.outlines.count(header) == 1
    skips = [line for line in result.outlines if line.startswith("SKIPPED")]
    assert len(skips) == 3
    assert sum(line.endswith(f"capall: {REASON}") for line in skips) == 2
    assert sum(line.endswith(f"capallbinary: {REASON}") for line in skips) == 1
    assert "warning" not in result.stdout.str().lower()
