"""Runs a group of stress matrix cases (tests/test_stress.py) with the real fds on files.
Arguments: a JSON file of cases (``Case.to_json``), the progress file, the files for the real stdout
and stderr, the watchdog in seconds."""

from __future__ import annotations

import json
import sys

import stress_child
from childlib import real_fds_to_files

cases_path, progress_path, out, err, watchdog = sys.argv[1:]
real_fds_to_files(out, err)
with open(cases_path) as file:
    cases = [stress_child.Case.from_json(c) for c in json.load(file)]
with open(progress_path, "w") as progress:
    stress_child.main(cases, progress, float(watchdog))
