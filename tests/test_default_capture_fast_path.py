"""The default capture block skips argument classification (a fast path in ``__new__``): it must
behave exactly as the checked path, and arguments that only look like the defaults still get checked."""

from __future__ import annotations

import pytest

from fdredirect import redirect_stderr_fd, redirect_stdout_fd
from helpers import run_ok


def test_defaults_and_spelled_out_defaults_capture_the_same(unbuffered: bool) -> None:
    child = run_ok(
        """
import os, sys
from fdredirect import redirect_stdout_fd, redirect_stderr_fd
enc = "".join(["utf", "-8"])  # equal to the default, not the same object
for make in (lambda: redirect_stdout_fd(), lambda: redirect_stdout_fd(None, encoding=enc, errors="replace")):
    r = make()
    with r as out:
        print("py")
        os.write(1, b"fd\\n")
    with r as again:
        os.write(1, b"reused\\n")
    assert out.getvalue() == "py\\nfd\\n", out.getvalue()
    assert again.getvalue() == "reused\\n", again.getvalue()
with redirect_stderr_fd() as err:
    os.write(2, b"e\\n")
assert err.getvalue() == "e\\n"
print("after")
""",
        unbuffered=unbuffered,
        timeout=60,
    )
    assert child.out == b"after\n"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tee": 1}, TypeError),
        ({"lines": 1}, TypeError),
        ({"timestamps": True}, ValueError),
        ({"encoding": "no-such-codec"}, LookupError),
        ({"errors": "no-such-handler"}, LookupError),
        ({"level": "x"}, TypeError),
    ],
)
def test_non_default_arguments_are_still_checked(kwargs: dict[str, object], error: type[Exception]) -> None:
    for manager in (redirect_stdout_fd, redirect_stderr_fd):
        with pytest.raises(error):
            manager(None, **kwargs)  # type: ignore[arg-type]


def test_default_instance_looks_like_the_checked_one() -> None:
    fast = redirect_stdout_fd()
    assert (fast.fd, fast.target, repr(fast)) == (1, None, "redirect_stdout_fd(None)")
    assert redirect_stderr_fd().fd == 2
