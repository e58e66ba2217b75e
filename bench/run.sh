#!/usr/bin/env bash
# mailer vs Postfix benchmark, one command on a fresh Debian 12 machine (run as root):
#   bench/run.sh [--reps 3] [--json out.json]
# 1. installs what it needs: postfix (preseeded "No configuration", so it does not start or take
#    port 25; it brings smtp-source, smtp-sink and the Postfix we compare against) and python3;
# 2. builds mailer in release mode in its own scratch path (.build-release, ~10 min from clean on
#    2 cores; skip with MAILER_BIN=/path/to/mailer);
# 3. runs bench/run.py: a private Postfix instance and mailer in temporary directories, both
#    relaying to one smtp-sink on 127.0.0.1, and prints the table (about 5 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || need_apt+=(postfix)
command -v python3 >/dev/null || need_apt+=(python3)
command -v findmnt >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then echo "run as root to install: ${need_apt[*]}" >&2; exit 1; fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
export PATH="$PATH:/usr/sbin"

# The receiver and forwarder drop to this user when mailer runs as root (as in production).
if [ "$(id -u)" -eq 0 ] && ! id mailer >/dev/null 2>&1; then
    useradd -r -s /usr/sbin/nologin mailer
fi

if [ -z "${MAILER_BIN:-}" ]; then
    command -v swift >/dev/null || { echo "swift not found: install the Swift 6 toolchain first (swift.org)" >&2; exit 1; }
    swift build -c release --scratch-path .build-release --product mailer
    MAILER_BIN="$(swift build -c release --scratch-path .build-release --show-bin-path)/mailer"
fi

echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
exec python3 bench/run.py --mailer "$MAILER_BIN" "$@"
