"""The demo runs every writer for real and shows fdredirect catching each."""

from __future__ import annotations

from helpers import run_ok


def test_demo_catches_every_writer(unbuffered: bool) -> None:
    child = run_ok("import runpy; runpy.run_module('fdredirect', run_name='__main__')", unbuffered=unbuffered)
    lines = child.out.decode().splitlines()
    assert lines[0].split() == ["writer", "contextlib.redirect_*", "fdredirect"]
    rows = lines[2:]
    assert len(rows) == 6
    assert all(row.endswith("caught") for row in rows)
    assert rows[0].split()[-2:] == ["caught", "caught"]  # print: both catch it
    assert all(" MISSED " in row for row in rows[1:])  # native writers: contextlib misses them
    assert child.err == b""
