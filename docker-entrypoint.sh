#!/bin/sh
# Migrate, then serve (the API, with the worker inside it unless WORKER_IN_PROCESS=false). Migrations are
# idempotent, so every start may run them; a failed migration stops the container before it serves a schema it
# does not match. `worker` runs the worker on its own instead (`docker run IMAGE worker`); any other arguments
# run as given (`docker run IMAGE alembic current`). `exec` makes the process PID 1, so SIGTERM from the
# orchestrator reaches it and it shuts down cleanly.
set -eu

if [ "${1:-}" = "worker" ]; then
  exec python -m app.worker
fi
if [ "$#" -gt 0 ]; then
  exec "$@"
fi

alembic upgrade head
exec uvicorn app.main:app --host 0.0.0.0 --port 8000
