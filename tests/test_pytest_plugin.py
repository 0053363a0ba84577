"""The pytest plugin, through real pytest runs in subprocesses (pytester)."""

from __future__ import annotations

import _pytest.capture
import pytest

CAPALL_TESTS = """
import os, sys
from fdredirect.testing import c_printf, c_write

def test_everything(capall):
    print("py")
    c_printf("c unflushed\\n")
    os.system("echo child")
    c_write(2, "err\\n")
    print("py err", file=sys.stderr)
    out, err = capall.readouterr()
    # the unflushed printf arrives when flushed: after the child's line when stdio buffers
    assert sorted(out.splitlines()) == ["c unflushed", "child", "py"], out
    assert out.startswith("py\\n")
    assert err == "err\\npy err\\n", err
    assert capall.readouterr() == ("", "")

def test_setup_output_is_seen_too(capall, noisy_fixture):
    assert capall.readouterr().out == "from the fixture\\n"

def test_invalid_utf8(capall):
    c_write(1, b"ok \\xff\\n")
    assert capall.readouterr().out == "ok \\ufffd\\n"

def test_binary(capallbinary):
    c_write(1, b"\\xff\\x00")
    c_write(2, b"\\xfe")
    assert capallbinary.readouterr() == (b"\\xff\\x00", b"\\xfe")
"""

CONFTEST = """
import pytest
from fdredirect.testing import c_printf

@pytest.fixture
def noisy_fixture():
    c_printf("from the fixture\\n")
    yield
"""


@pytest.fixture(autouse=True)
def _both_buffering_modes(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Run the inner pytest with PYTHONUNBUFFERED unset: libc's stdout then really buffers."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)


@pytest.mark.parametrize("mode", ["fd", "sys", "tee-sys", "no"])
def test_capall_in_every_capture_mode(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(CAPALL_TESTS)
    result = pytester.runpytest_subprocess(f"--capture={mode}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_capall_with_xdist(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(CAPALL_TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


LAST_TEST_UNFLUSHED = """
from fdredirect.testing import c_printf

def test_first():
    pass

def test_last():
    c_printf("UNFLUSHED-IN-LAST-TEST\\n")
"""


def test_unflushed_printf_of_the_last_test_is_attributed_to_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LAST_TEST_UNFLUSHED)
    result = pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    lines = result.stdout.lines
    section = lines.index(next(x for x in lines if "_ test_last _" in x))
    printed = lines.index("UNFLUSHED-IN-LAST-TEST")
    summary = next(i for i, x in enumerate(lines) if "2 passed" in x)
    assert section < printed < summary
    assert lines[printed - 1].startswith("-")
    assert "Captured stdout call" in lines[printed - 1]


def test_flushing_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfdredirect_flush = false\n")
    pytester.makepyfile(LAST_TEST_UNFLUSHED)
    result = pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    lines = result.stdout.lines
    # pytest's own behaviour: the bytes leave libc only at process exit, after the summary
    assert lines[-1] == "UNFLUSHED-IN-LAST-TEST"


def test_unread_output_appears_in_a_failing_tests_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from fdredirect.testing import c_printf, c_write

        def test_fails(capall):
            print("read")
            capall.readouterr()
            print("unread python")
            c_printf("unread C\\n")
            c_write(2, "unread stderr\\n")
            assert False
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- Captured capall stdout call -*",
            "unread python",
            "unread C",
            "*- Captured capall stderr call -*",
            "unread stderr",
        ]
    )
    assert "read" not in result.stdout.lines


def test_disabled_lets_output_through(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from fdredirect.testing import c_printf

        def test_through(capall):
            print("before")
            with capall.disabled():
                print("THROUGH-PY")
                c_printf("THROUGH-C\\n")
            print("after")
            assert capall.readouterr().out == "before\\nafter\\n"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert "THROUGH-PY\nTHROUGH-C\n" in text  # on the terminal, during the test (after its name)
    assert "Captured" not in text


@pytest.mark.parametrize(
    ("fixtures", "message"),
    [
        ("capall, capfd", "cannot use capall and capfd at the same time"),
        ("capsys, capall", "cannot use capall and capsys at the same time"),
        pytest.param(
            "capallbinary, capteesys",
            "cannot use capallbinary and capteesys at the same time",
            marks=pytest.mark.skipif(not hasattr(_pytest.capture, "capteesys"), reason="no capteesys in this pytest"),
        ),
        ("capall, capallbinary", "cannot use capall and capallbinary at the same time"),
    ],
)
def test_conflicting_fixtures_are_a_clear_error(pytester: pytest.Pytester, fixtures: str, message: str) -> None:
    pytester.makepyfile(f"def test_both({fixtures}):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*UsageError: {message}*"])


def test_capall_requested_dynamically(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from fdredirect.testing import c_printf

        def test_dynamic(request):
            capall = request.getfixturevalue("capall")
            c_printf("late start\\n")
            assert capall.readouterr().out == "late start\\n"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
