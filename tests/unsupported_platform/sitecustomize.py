"""Makes every interpreter started with this directory on PYTHONPATH one where fdredirect has no
fd core: Python imports ``sitecustomize`` at startup, before anything can import fdredirect, and
this puts the stand-in (``unsupported_native``) in place of ``fdredirect._native``. Used by
``test_unsupported_platform.py`` for child interpreters and inner pytest runs."""

import sys

import unsupported_native

sys.modules["fdredirect._native"] = unsupported_native
