"""Peak memory of a live block whose writer outruns the target.

    python bench/live_memory.py [--mib 256]

Each case runs in a fresh interpreter: C code holding the GIL writes ``--mib`` MiB into fd 1
inside ``redirect_stdout_fd(target)``, so nothing can be delivered until the write returns and
the reader thread buffers it all. Reported: the peak RSS growth over the interpreter's RSS just
before the block (``ru_maxrss``), as a multiple of the data written.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

TARGETS = {
    "BytesIO": "io.BytesIO()",
    "discarding callable (bytes)": "lambda piece: None",
    "StringIO": "io.StringIO()",
    "discarding callable (str)": "Discard()",
}

CHILD = """
import io, resource, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit

class Discard:
    def __call__(self, piece):
        pass

size = {size}
target = {target}
encoding = {encoding}
with redirect_stdout_fd(target, encoding=encoding):  # warm-up: threads started, imports done
    c_emit(1, 1 << 20, hold_gil=True)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with redirect_stdout_fd(target, encoding=encoding):
    c_emit(1, size, hold_gil=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024 / size)
"""


def measure(name: str, size: int) -> float:
    text = "str" in name or name == "StringIO"
    code = CHILD.format(size=size, target=TARGETS[name], encoding='"utf-8"' if text else "None")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True, timeout=600
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    size = args.mib << 20
    print(f"| live target ({args.mib} MiB written holding the GIL) | peak RSS growth / data |")
    print("|---|---|")
    for name in TARGETS:
        print(f"| {name} | {measure(name, size):.2f}x |")


if __name__ == "__main__":
    main()
