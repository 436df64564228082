#!/usr/bin/env bash
# Creates the unprivileged users tests use to check what root cannot: `aps-test` (an unwritable
# folder is refused: root writes through permission bits) and the tenant accounts
# `aps-tenant1`, `aps-tenant2` (instances' scripts and tools run as them; one must not reach the
# other's files). Idempotent; the uids are whatever the system picks, tests look the users up by
# name.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "test-user.sh: not root, cannot create test users (tests running as non-root do not need them)" >&2
    exit 0
fi
for user in aps-test aps-tenant1 aps-tenant2; do
    if id "$user" >/dev/null 2>&1; then
        continue
    fi
    # --system: no login, no aging; no home: the tests give it nothing to keep. Two test
    # processes may race to create it, so a failure is fine as long as the user exists after.
    useradd --system --no-create-home --shell /usr/sbin/nologin "$user" 2>/dev/null || id "$user" >/dev/null
done
