"""Whether this build has the fd core (issue 13). Where it does not (Windows, or a build with the
Cargo feature ``unsupported``), ``_native.UNSUPPORTED`` is the reason; the pytest plugin, the
Jupyter extension and the demo then say so once and do nothing else."""

from __future__ import annotations

from . import _native

# The real module has no such name: ``getattr`` keeps the stub (and stubtest) to the real one.
UNSUPPORTED: str | None = getattr(_native, "UNSUPPORTED", None)
