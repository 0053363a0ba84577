"""fork() while other threads enter, leave and deliver: no lock may stay held in the child, and the
parent's blocks stay exact."""

from __future__ import annotations

from helpers import last_report, run_file_ok


def test_fork_while_other_threads_enter_leave_and_deliver() -> None:
    child = run_file_ok("fork_stress.py", timeout=90)
    problems, fd2_sinks, main_lines, tee_lines = last_report(child)
    assert problems == []
    # fd 2: every line written by any thread reached one place (a block's sink, or the real
    # stderr when no block was open on fd 2), or two while the main thread's tee block was open.
    real_stderr = child.err.decode().splitlines(keepends=True)[:-1]
    counts = collections_counter("".join(fd2_sinks).splitlines(keepends=True) + real_stderr)
    assert all(count in (1, 2) for count in counts.values()), [line for line, n in counts.items() if n > 2]
    for n, line in enumerate(main_lines):
        # A tee copy goes to the sink fd 2 had at enter: another thread's block that may have
        # ended (and been read) before the copy arrived.
        assert counts.get(line) in ((1, 2) if n % 3 == 2 else (1,)), line
    # fd 1: the tee blocks' copies, and nothing else (children only write inside their blocks).
    assert child.out.decode() == "".join(tee_lines)


def collections_counter(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    return counts
