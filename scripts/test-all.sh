#!/usr/bin/env bash
# The one command that runs every test on a fresh Debian 12 machine, as root:
#   1. apt-installs Prosody, ejabberd, curl, python3-venv, Chromium, npm, systemd (for
#      systemd-analyze), nginx, openssl and ca-certificates when missing;
#   2. creates <repo>/.venv and pip-installs tests/requirements.txt;
#   3. cargo build --workspace --bins, then cargo test --workspace (Rust unit tests);
#   3b. node --test: unit tests of the XMPPong web client's modules (components/pong/web);
#   4. pytest tests -v (integration tests against real Prosody and ejabberd on loopback,
#      browser tests in Debian's headless Chromium).
# Every stage runs even when an earlier one failed (so one run shows all problems);
# the exit status is non-zero when any stage failed.
# Environment: CI=true turns "server/binary missing" skips into failures (see tests/conftest.py);
# ALLOW_SKIP=1 accepts skipped integration tests (otherwise any skip fails the run);
# PYTEST_ARGS adds pytest arguments (e.g. PYTEST_ARGS="-k servers"); XMPP_ECHO_BIN overrides
# the component binary under test (default <repo>/target/debug/xmpp-echo).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'test-all: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

# ---------------------------------------------------------------- 1. system packages
need_pkgs=()
{ command -v prosody >/dev/null && command -v prosodyctl >/dev/null; } || need_pkgs+=(prosody lua-unbound)
{ command -v erl >/dev/null && compgen -G '/usr/lib/*/ejabberd-*/ebin/ejabberd.app' >/dev/null; } || need_pkgs+=(ejabberd)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v python3 >/dev/null || need_pkgs+=(python3)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need_pkgs+=(python3-venv); fi
# The webstatus browser test: Debian's Chromium driven by playwright-core (from npm).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
command -v npm >/dev/null || need_pkgs+=(npm)
# deploy/ checks (tests/test_deploy.py): systemd-analyze for the units, a real nginx with an
# openssl-made certificate for the proxy config.
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# tests/test_tls.py: --tls without --tls-ca verifies against the system's CA store.
[ -s /etc/ssl/certs/ca-certificates.crt ] || need_pkgs+=(ca-certificates)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing missing packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update || die "apt-get update failed"
  as_root apt-get install -y --no-install-recommends "${need_pkgs[@]}" || die "apt-get install failed"
  # Where no policy-rc.d blocks it, the packages start system services on 5222/5269/5280/5347
  # (and nginx on 80).
  # The tests use their own servers on free ports; stop the ones this run just installed.
  for svc in prosody ejabberd nginx; do
    if printf '%s\n' "${need_pkgs[@]}" | grep -qx "$svc"; then
      as_root invoke-rc.d "$svc" stop >/dev/null 2>&1 || true
    fi
  done
else
  log "system packages present (prosody, ejabberd, curl, python3 venv)"
fi

# ---------------------------------------------------------------- 2. Python venv
VENV="$REPO/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
fi
log "pip install -r tests/requirements.txt"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r tests/requirements.txt \
  || die "pip install failed"

# ---------------------------------------------------------------- 2b. browser test deps
for BROWSER_DIR in "$REPO/tests/browser/webstatus" "$REPO/tests/browser/pong"; do
  if [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
    log "npm ci in ${BROWSER_DIR#"$REPO"/} (playwright-core; the browser is Debian's chromium)"
    npm ci --prefix "$BROWSER_DIR" --no-audit --no-fund || die "npm ci failed"
  fi
done

# ---------------------------------------------------------------- 3. Rust
failed=()
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"

log "cargo build --workspace --bins"
cargo build --workspace --bins || failed+=("cargo build")

log "cargo test --workspace"
cargo test --workspace || failed+=("cargo test")

log "node --test tests/browser/pong/unit (the XMPPong web client's modules)"
node --test "$REPO/tests/browser/pong/unit/" || failed+=("node --test")

# ---------------------------------------------------------------- 4. integration tests
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  export XMPP_ECHO_BIN="${XMPP_ECHO_BIN:-$CARGO_TARGET_DIR/debug/xmpp-echo}"
  export XMPP_PONG_BIN="${XMPP_PONG_BIN:-$CARGO_TARGET_DIR/debug/xmpp-pong}"
  export XMPP_WEBSTATUS_BIN="${XMPP_WEBSTATUS_BIN:-$CARGO_TARGET_DIR/debug/xmpp-webstatus}"
fi
log "pytest tests -v ${PYTEST_ARGS:-}"
REPORT="$REPO/target/pytest-report.xml"
mkdir -p "$REPO/target"
rm -f "$REPORT"
# shellcheck disable=SC2086  # PYTEST_ARGS is split on purpose
"$VENV/bin/python" -m pytest tests -v -rs --junitxml="$REPORT" ${PYTEST_ARGS:-} || failed+=("pytest")

# A skipped integration test proved nothing: say so loudly, and fail unless told not to.
skipped=$("$VENV/bin/python" - "$REPORT" <<'PY' 2>/dev/null
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
print(sum(int(s.get("skipped", 0)) for s in root.iter("testsuite")))
PY
) || skipped="unknown (no pytest report)"
if [ "$skipped" != "0" ]; then
  printf '\n!!!!!!!! test-all: %s integration test(s) SKIPPED: they proved nothing (see "SKIPPED" above) !!!!!!!!\n' "$skipped" >&2
  if [ "${ALLOW_SKIP:-0}" = "1" ]; then
    printf 'test-all: ALLOW_SKIP=1, so skips do not fail this run\n' >&2
  else
    failed+=("pytest skips (set ALLOW_SKIP=1 to accept them)")
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf '\ntest-all: FAILED stages: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '\ntest-all: all stages passed\n' >&2
