#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (real database servers and clients, the
# script interpreters). Idempotent: does nothing when everything is there. Quiet: one line per
# step, details in the log.
set -euo pipefail

LOG_DIR=${APS_CI_LOG_DIR:-/tmp/aps-ci/logs}
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/install-deps.log"

# restic: the repository store's interoperability test (our repositories open with the
# Debian restic tool). groff-base, man-db: the generated manual pages are rendered by `man -l`
# (tests/commands/comforts.rs).
PACKAGES=(mariadb-server mariadb-client postgresql postgresql-client php-cli perl python3 zstd restic groff-base man-db)

step() { printf 'install-deps: %s\n' "$*"; }

missing=()
for p in "${PACKAGES[@]}"; do
    # `install ok installed` only: a removed-but-configured package does not count.
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    step "all ${#PACKAGES[@]} packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive

# The packages' postinst would start the servers as system services (on the default ports,
# via init scripts; there is no systemd here). The tests run their own servers on private
# ports, so forbid service starts during the install; restore whatever policy was there.
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
if [ -e "$POLICY" ]; then
    policy_backup=$(mktemp)
    $SUDO cp -p "$POLICY" "$policy_backup"
fi
restore_policy() {
    if [ -n "$policy_backup" ]; then
        $SUDO cp -p "$policy_backup" "$POLICY"
        rm -f "$policy_backup"
    else
        $SUDO rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 755 "$POLICY"

step "missing: ${missing[*]}; apt-get update (log: $LOG)"
if ! $SUDO apt-get update -q >>"$LOG" 2>&1; then
    step "apt-get update FAILED; tail of $LOG:"
    tail -n 20 "$LOG" >&2
    exit 1
fi

step "apt-get install ${missing[*]}"
if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1; then
    step "apt-get install FAILED; tail of $LOG:"
    tail -n 30 "$LOG" >&2
    exit 1
fi
step "done"
