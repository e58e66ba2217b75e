#!/usr/bin/env bash
# Runs every test: the Swift unit tests, then the end-to-end tests against the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build
swift test
python3 -m pytest -q -p no:cacheprovider Tests/e2e "$@"
