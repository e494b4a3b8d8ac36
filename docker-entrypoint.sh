#!/bin/sh
# Migrate, then serve. Migrations are idempotent, so every start may run them; a failed migration stops the
# container before it serves a schema it does not match. Any arguments run instead (`docker run IMAGE alembic
# current`). `exec` makes uvicorn PID 1, so SIGTERM from the orchestrator reaches it and it shuts down cleanly.
set -eu

if [ "$#" -gt 0 ]; then
  exec "$@"
fi

alembic upgrade head
exec uvicorn app.main:app --host 0.0.0.0 --port 8000
