"""The worker: background work on a Postgres job queue (procrastinate). See `queue.py`."""
