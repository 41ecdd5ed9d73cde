#!/usr/bin/env bash
# Start the services the tests need, run pytest, stop them again. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1

# The layering and the types (contracts and settings in pyproject.toml); both run, then either failing fails the run.
static_failed=()
.venv/bin/lint-imports --no-cache --no-logo || static_failed+=("lint-imports (import contracts, [tool.importlinter])")
.venv/bin/mypy src/clinreason || static_failed+=("mypy src/clinreason ([tool.mypy])")
if [ "${#static_failed[@]}" -gt 0 ]; then
  for tool in "${static_failed[@]}"; do echo "FAILED: $tool" >&2; done
  exit 1
fi

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
