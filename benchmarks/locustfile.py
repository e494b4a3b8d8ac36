"""The load generator of `benchmarks/load.py` when wrk is not installed: locust, headless, one user per connection,
each sending the same GET and checking every answer as `benchmarks/check.lua` does for wrk. Configured by the
same environment variables, plus the path:

    BENCH_PATH      the path to GET (the host is locust's --host)
    BENCH_STATUS    the status every answer must have (200)
    BENCH_EXPECT    text every answer's body must contain
    BENCH_AUTH      the Authorization header, if any
    BENCH_DELAY_MS  a pause before each request of each user, as wrk's delay(): paced load

locust generates less load than wrk from one core, so the service and the baseline may both be held back by it:
the ratios it gives are closer to 1 than wrk's. Prefer wrk when it can be installed.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, task

_PATH = os.environ.get("BENCH_PATH", "/")
_STATUS = int(os.environ.get("BENCH_STATUS", "200"))
_EXPECT = os.environ.get("BENCH_EXPECT", "")
_HEADERS = {"Authorization": os.environ["BENCH_AUTH"]} if os.environ.get("BENCH_AUTH") else {}


class Reader(FastHttpUser):
    wait_time = constant(float(os.environ.get("BENCH_DELAY_MS", "0")) / 1000)

    @task
    def read(self) -> None:
        with self.client.get(_PATH, headers=_HEADERS, name="read", catch_response=True) as response:
            body = response.text or ""
            if response.status_code != _STATUS or _EXPECT not in body:
                response.failure(f"{response.status_code} {body[:300]}")
            else:
                response.success()
