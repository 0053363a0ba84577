"""One ``redirect_stdout_fd`` instance shared by two asyncio tasks whose blocks overlap and end out
of order (tests/test_contexts.py): a enters, b enters, a leaves, b writes and leaves. Writes "after"
to fd 1 and reports what each block captured."""

from __future__ import annotations

import asyncio
from typing import Any

from childlib import report
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write

shared = redirect_stdout_fd()


async def main() -> tuple[str, str]:
    a_in, b_in, a_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def a() -> Any:
        async with shared as out:
            c_write(1, "a\n")
            a_in.set()
            await b_in.wait()
        a_out.set()
        return out

    async def b() -> Any:
        await a_in.wait()
        async with shared as out:
            c_write(1, "b1\n")
            b_in.set()
            await a_out.wait()
            c_write(1, "b2\n")
        return out

    out_a, out_b = await asyncio.gather(a(), b())
    c_write(1, "after\n")
    return out_a.getvalue(), out_b.getvalue()


report(asyncio.run(main()))
