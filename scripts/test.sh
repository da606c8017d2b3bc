#!/usr/bin/env bash
# Run the whole test suite. Uses PostgreSQL and Redis on 127.0.0.1 when they answer
# (as on CI), SQLite and the filesystem broker otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
reach() { "$py" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; }
if [ -z "${DATABASE_URL:-}" ] && reach 5432; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
fi
if [ -z "${REDIS_URL:-}" ] && reach 6379; then
  export REDIS_URL="redis://127.0.0.1:6379/15"
fi
echo "tests: database=${DATABASE_URL:-sqlite} redis=${REDIS_URL:-none}"
exec .venv/bin/pytest "$@"
