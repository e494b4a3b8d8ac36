"""What the process built to start is kept out of the garbage collector's way while it serves.

A started app holds about 175,000 objects the cyclic garbage collector tracks (the routes and their schemas, the
models' metadata, compiled statements, the libraries' own). They live as long as the process, yet every full
collection walks all of them again. Under load a full collection comes about once a second (the objects of requests
in flight outlive the young generations), and each took about 90 ms on the load benchmark's machine: 90 ms in which
the event loop serves nothing, which set the p99 of every read. `gc.freeze()` moves what exists at start into a
permanent generation that collections skip (the standard library's way, made for long-lived servers); what requests
make is collected as before. Those objects are still freed when nothing refers to them any more.

On stop everything is unfrozen again, so that a process that builds and stops many apps (the test suite) collects
each one once it is gone (tests/kit/test_app_lifetime.py).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen() -> Iterator[None]:
    """Freezes every object the collector tracks now, until the block ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
