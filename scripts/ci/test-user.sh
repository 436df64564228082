#!/usr/bin/env bash
# Creates the unprivileged user `aps-test` that tests use to check what root cannot: that an
# unwritable folder is refused (root writes through permission bits). Idempotent; the uid is
# whatever the system picks, tests look the user up by name.
set -euo pipefail

user=aps-test
if id "$user" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "test-user.sh: not root, cannot create $user (tests running as non-root do not need it)" >&2
    exit 0
fi
# --system: no login, no aging; no home: the tests give it nothing to keep. Two test processes
# may race to create it, so a failure is fine as long as the user exists afterwards.
useradd --system --no-create-home --shell /usr/sbin/nologin "$user" 2>/dev/null || id "$user" >/dev/null
