#!/usr/bin/env bash
# Start the services the tests need, run pytest, stop them again. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
trap 'scripts/pg-test.sh stop' EXIT
if url="$(scripts/pg-test.sh start)"; then
  export CLINREASON_TEST_PG_URL="$url"
  echo "PostgreSQL test cluster: $url"
elif [ "${CI:-}" = "true" ]; then
  echo "could not start PostgreSQL, and CI requires the store tests to run on it" >&2
  exit 1
else
  echo "PostgreSQL unavailable: store tests will run on SQLite only" >&2
fi
.venv/bin/python -m pytest "$@"
