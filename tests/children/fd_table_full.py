"""A block entered with the fd table full (tests/test_targets.py): it must fail with EMFILE and
leave fd 1 and sys.stdout as they were, then work again once two fds are free. Prints "EMFILE"
and "works again" on stdout."""

from __future__ import annotations

import errno
import os
import resource
import sys

from fdredirect import redirect_stdout_fd

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
hogs = []
try:
    while True:
        hogs.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
before = (os.fstat(1).st_ino, sys.stdout)
raised = None
try:
    with redirect_stdout_fd():
        pass
except OSError as e:
    raised = e.errno
assert raised == errno.EMFILE, raised
assert (os.fstat(1).st_ino, sys.stdout) == before
print("EMFILE")
os.close(hogs.pop())
os.close(hogs.pop())
with redirect_stdout_fd() as out:
    print("works again")
print(out.getvalue().strip())
