"""capall/capallbinary: see it live (tee) and still have it; stdout and stderr merged in write order
(issue 12 item 2). Real pytest runs in subprocesses (pytester), exact output asserted."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

# Each test writes from Python, C (flushed), a child process and C to stderr, in that order.
TESTS = """
import os, sys
import pytest
from fdredirect.testing import c_printf, c_write

def emit(tag):
    print(f"{tag} py")
    c_printf(f"{tag} c\\n", flush=True)
    os.system(f"echo {tag} child")
    c_write(2, f"{tag} err\\n")

def test_read(capall):
    emit("read")
    assert capall.readouterr() == ("read py\\nread c\\nread child\\n", "read err\\n")

def test_unread_fails(capallbinary):
    emit("unread")
    assert False
"""

SEPARATE_SECTIONS = [
    "*- Captured capall stdout call -*",
    "unread py",
    "unread c",
    "unread child",
    "*- Captured capall stderr call -*",
    "unread err",
    "*= short test summary info =*",
]


@pytest.fixture(autouse=True)
def _buffering(monkeypatch: pytest.MonkeyPatch, unbuffered: bool) -> None:
    """The inner pytest with PYTHONUNBUFFERED set and unset (unset: libc's stdout really buffers)."""
    if unbuffered:
        monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    else:
        monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", *args, timeout=120)


def _live(result: pytest.RunResult) -> list[str]:
    """What reached the terminal's stdout before the first report section (the progress
    percentage, padded to the terminal's width, left out)."""
    lines = result.stdout.lines
    live = lines[: next(i for i, line in enumerate(lines) if "= FAILURES =" in line)]
    return [re.sub(r" +\[100%\]$", "", line) for line in live]


@pytest.mark.parametrize("mode", ["fd", "sys", "no"])
def test_tee_flag_shows_output_live_once_and_keeps_it(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(TESTS)
    result = _run(pytester, "--capall-tee", f"--capture={mode}")
    result.assert_outcomes(passed=1, failed=1)
    # On the terminal as written, once (not again from pytest's own capture), before each verdict.
    assert _live(result) == [
        "read py",
        "read c",
        "read child",
        ".unread py",
        "unread c",
        "unread child",
        "F",
    ]
    assert result.stderr.lines == ["read err", "unread err"]
    # ...and still captured: read by the first test, reported for the failing one.
    result.stdout.fnmatch_lines(SEPARATE_SECTIONS, consecutive=True)


def test_tee_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncapall_tee = true\n")
    pytester.makepyfile(TESTS)
    result = _run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert _live(result)[:3] == ["read py", "read c", "read child"]
    assert result.stderr.lines == ["read err", "unread err"]


def test_tee_marker_for_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        TESTS.replace("def test_read(", "@pytest.mark.capall(tee=True)\ndef test_read(")
        + "\n@pytest.mark.capall(tee=False)\ndef test_off(capall):\n    emit('off')\n"
    )
    result = _run(pytester, "--capall-tee")  # the marker wins over the flag, both ways
    result.assert_outcomes(passed=2, failed=1)
    assert _live(result) == [
        "read py",
        "read c",
        "read child",
        ".unread py",
        "unread c",
        "unread child",
        "F.",
    ]
    assert result.stderr.lines == ["read err", "unread err"]


def test_without_tee_nothing_reaches_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = _run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert _live(result) == [".F"]
    assert result.stderr.lines == []
    result.stdout.fnmatch_lines(SEPARATE_SECTIONS, consecutive=True)


MERGED_TESTS = """
import sys
import pytest
from fdredirect.testing import c_fprintf_stderr, c_printf, c_write

def emit():
    for i in range(3):
        c_write(1, f"out {i}\\n")
        c_fprintf_stderr(f"err {i}\\n")
    print("py out")
    print("py err", file=sys.stderr)
    c_printf("c out\\n", flush=True)

EXPECTED = "out 0\\nerr 0\\nout 1\\nerr 1\\nout 2\\nerr 2\\npy out\\npy err\\nc out\\n"

def test_read(capall):
    emit()
    assert capall.readouterr() == (EXPECTED, "")

def test_binary(capallbinary):
    emit()
    assert capallbinary.readouterr() == (EXPECTED.encode(), b"")

def test_unread_fails(capall):
    emit()
    assert False
"""

MERGED_SECTION = [
    "*- Captured capall stdout+stderr call -*",
    "out 0",
    "err 0",
    "out 1",
    "err 1",
    "out 2",
    "err 2",
    "py out",
    "py err",
    "c out",
    "*= short test summary info =*",
]


@pytest.mark.parametrize("how", ["flag", "ini", "marker"])
def test_merged_in_write_order(pytester: pytest.Pytester, how: str) -> None:
    args = []
    if how == "flag":
        args.append("--capall-merged")
    elif how == "ini":
        pytester.makeini("[pytest]\ncapall_merged = true\n")
    else:
        pytester.makeconftest(
            "import pytest\n\ndef pytest_collection_modifyitems(items):\n"
            "    for item in items:\n        item.add_marker(pytest.mark.capall(merged=True))\n"
        )
    pytester.makepyfile(MERGED_TESTS)
    result = _run(pytester, *args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(MERGED_SECTION, consecutive=True)
    assert "Captured capall stderr" not in result.stdout.str()


def test_merged_and_tee(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MERGED_TESTS)
    result = _run(pytester, "--capall-merged", "--capall-tee")
    result.assert_outcomes(passed=2, failed=1)
    lines = ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2", "py out", "py err", "c out"]
    # One stream on the terminal's stdout too, in write order, and nothing on its stderr.
    assert _live(result) == [*lines, "." + lines[0], *lines[1:], "." + lines[0], *lines[1:], "F"]
    assert result.stderr.lines == []
    result.stdout.fnmatch_lines(MERGED_SECTION, consecutive=True)


def test_report_sections_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_separate=TESTS.replace("test_unread_fails", "test_separate_fails"),
        test_merged=MERGED_TESTS.replace("def test_", "@pytest.mark.capall(merged=True)\ndef test_"),
    )
    result = _run(pytester, "-n", "2", "--capall-tee")
    result.assert_outcomes(passed=3, failed=2)
    text = result.stdout.str()
    separate = text[text.index("_ test_separate_fails _") :]
    merged = text[text.index("_ test_unread_fails _") :]
    for section, expected in ((separate, SEPARATE_SECTIONS), (merged, MERGED_SECTION)):
        lines = section.splitlines()
        start = next(i for i, line in enumerate(lines) if "- Captured capall" in line)
        end = next(i for i, line in enumerate(lines) if i > start and line.startswith(("=", "_")))
        assert len(lines[start:end]) == len(expected) - 1
        pytester_lines = pytest.LineMatcher(lines[start : end + 1])
        pytester_lines.fnmatch_lines(expected[:-1], consecutive=True)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("capall(True)", "@pytest.mark.capall takes only the keyword arguments tee and merged"),
        ("capall(teee=True)", "@pytest.mark.capall takes only the keyword arguments tee and merged"),
        ("capall(tee='yes')", "@pytest.mark.capall(tee=...) must be a bool or None, not str"),
    ],
)
def test_a_bad_marker_is_a_clear_error(pytester: pytest.Pytester, marker: str, message: str) -> None:
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.{marker}\ndef test_it(capall):\n    print('x')\n")
    result = _run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*TypeError: {message}*"])


def test_set_from_a_fixture_or_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from fdredirect.testing import c_write

        @pytest.fixture
        def live(capall):
            capall.tee = True
            return capall

        def test_live(live):
            c_write(1, "seen live\\n")
            c_write(2, "err live\\n")
            assert live.readouterr() == ("seen live\\n", "err live\\n")

        def test_merged_from_here_on(capall):
            c_write(2, "before\\n")
            capall.merged = True
            c_write(1, "a\\n")
            c_write(2, "b\\n")
            assert capall.readouterr() == ("a\\nb\\n", "before\\n")
            assert (capall.tee, capall.merged) == (False, True)

        def test_not_a_bool(capall):
            with pytest.raises(TypeError, match="^capall.tee must be a bool, not str$"):
                capall.tee = "yes"
        """
    )
    result = _run(pytester)
    result.assert_outcomes(passed=3)
    assert result.stdout.lines[0] == "seen live"
    assert result.stderr.lines == ["err live"]
