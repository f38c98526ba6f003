#!/usr/bin/env bash
# The one command for a local development stack, on a fresh Debian 12 machine (as root):
#   - installs Prosody if it is missing,
#   - starts it in the foreground with a self-contained config under ./.dev (loopback only),
#   - registers the demo users alice/alicepw and bob/bobpw,
#   - builds the components (cargo build --release) and starts them against Prosody,
#   - prints how to connect, and on Ctrl-C stops the components, then Prosody, prints
#     "stopped" and exits 0 (a component or Prosody dying on its own exits 1).
# Ports (all on 127.0.0.1; each checked before anything starts; override by env):
#   XMPP_C2S_PORT=5222        clients (XMPP)
#   XMPP_COMPONENT_PORT=5347  components (XEP-0114)
#   XMPP_HTTP_PORT=5280       Prosody's HTTP: the XMPP WebSocket ws://127.0.0.1:5280/xmpp-websocket
#   WEBSTATUS_HTTP_PORT=8080  xmpp-webstatus status pages
#   PONG_HTTP_PORT=8081       xmpp-pong: web client (when built with it) and leaderboard
# DEV_DIR (default <repo>/.dev) holds the config, data, per-component secrets and logs
# (logs are appended across runs).
# DEV_LOG (default info) is the components' --log filter.
# DEV_SKIP_BUILD=1 skips cargo; BIN_DIR (default <target>/release) is where the binaries are.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV_DIR=${DEV_DIR:-$REPO/.dev}
C2S_PORT=${XMPP_C2S_PORT:-5222}
COMPONENT_PORT=${XMPP_COMPONENT_PORT:-5347}
HTTP_PORT=${XMPP_HTTP_PORT:-5280}
DEV_LOG=${DEV_LOG:-info}
DOMAIN=localhost

PONG_HTTP_PORT=${PONG_HTTP_PORT:-8081}
WEBSTATUS_HTTP_PORT=${WEBSTATUS_HTTP_PORT:-8080}

# Components of the stack, one line each:
#   "<cargo package = binary name> <component domain> [extra flags...]"
COMPONENTS=(
  "xmpp-echo echo.localhost"
  "xmpp-pong pong.localhost --http 127.0.0.1:$PONG_HTTP_PORT --data $DEV_DIR/data/pong"
  "xmpp-webstatus webstatus.localhost --http 127.0.0.1:$WEBSTATUS_HTTP_PORT --data $DEV_DIR/data/webstatus"
)

log() { printf '[dev-stack] %s\n' "$*"; }
die() { printf '[dev-stack] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Children run in their own session (setsid): a Ctrl-C in the terminal reaches only this
# script, which then stops them in order. (In a script, a background job is never a
# process-group leader, so setsid execs in place and $! is the real PID.)
spawn() { setsid "$@" & }

# True once the c2s port answers a stream header with <stream:features>.
c2s_ready() (
  buf=""
  exec 3<>"/dev/tcp/127.0.0.1/$C2S_PORT" || exit 1
  printf "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" "$DOMAIN" >&3
  IFS= read -r -t 1 -N 8192 -u 3 buf || true   # on timeout, read keeps the partial input
  [[ $buf == *"stream:features"* ]]
) 2>/dev/null

# ---------------------------------------------------------------- install
if ! command -v prosody >/dev/null || ! command -v prosodyctl >/dev/null; then
  log "installing Prosody"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update
  as_root apt-get install -y --no-install-recommends prosody lua-unbound
  # Without a policy-rc.d the package starts the system service on our ports: stop it.
  as_root invoke-rc.d prosody stop >/dev/null 2>&1 || true
fi
[ "${DEV_SKIP_BUILD:-0}" = 1 ] || command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain first"

for entry in "XMPP_C2S_PORT=$C2S_PORT" "XMPP_COMPONENT_PORT=$COMPONENT_PORT" "XMPP_HTTP_PORT=$HTTP_PORT" \
             "WEBSTATUS_HTTP_PORT=$WEBSTATUS_HTTP_PORT" "PONG_HTTP_PORT=$PONG_HTTP_PORT"; do
  var=${entry%%=*} port=${entry#*=}
  if port_busy "$port"; then
    die "port $port on 127.0.0.1 is in use (a system Prosody? 'invoke-rc.d prosody stop'; another" \
      "dev stack?); free it or move it with $var=<port>"
  fi
done

# ---------------------------------------------------------------- build
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/release}
if [ "${DEV_SKIP_BUILD:-0}" != 1 ]; then
  packages=()
  for c in "${COMPONENTS[@]}"; do packages+=(-p "${c%% *}"); done
  log "cargo build --release ${packages[*]}"
  (cd "$REPO" && cargo build --release "${packages[@]}")
fi

# The pong browser client (xmpp-pong --websocket-url) talks to Prosody's WebSocket; older
# builds have no such flag.
PONG_WEB=0
if "$BIN_DIR/xmpp-pong" --help 2>/dev/null | grep -q -- '--websocket-url'; then
  PONG_WEB=1
  for i in "${!COMPONENTS[@]}"; do
    [[ ${COMPONENTS[$i]} == "xmpp-pong "* ]] &&
      COMPONENTS[i]+=" --websocket-url ws://127.0.0.1:$HTTP_PORT/xmpp-websocket"
  done
fi

# ---------------------------------------------------------------- config
mkdir -p "$DEV_DIR/data" "$DEV_DIR/secrets" "$DEV_DIR/logs"
printf '*\n' > "$DEV_DIR/.gitignore"    # never commit the dev stack's data or secrets
chmod 700 "$DEV_DIR/secrets"
CFG="$DEV_DIR/prosody.cfg.lua"
{
  cat <<EOF
-- Generated by scripts/dev-stack.sh: a local development Prosody on loopback only.
run_as_root = true                        -- the dev stack runs as root on a throwaway machine
data_path = "$DEV_DIR/data"
pidfile = "prosody.pid"
certificates = "$DEV_DIR/data"            -- no TLS on loopback
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "127.0.0.1" }
c2s_ports = { $C2S_PORT }
component_ports = { $COMPONENT_PORT }
component_interfaces = { "127.0.0.1" }
http_ports = { $HTTP_PORT }
http_interfaces = { "127.0.0.1" }
https_ports = { }
modules_disabled = { "s2s" }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "register"; "websocket" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true       -- plain auth without TLS: loopback development only
consider_websocket_secure = true
authentication = "internal_hashed"

VirtualHost "$DOMAIN"
EOF
  # The components' sections are the production snippets (deploy/prosody/), with the
  # local domain and this stack's secrets.
  for c in "${COMPONENTS[@]}"; do
    read -r bin domain _ <<< "$c"
    secret_file="$DEV_DIR/secrets/$domain"
    [ -s "$secret_file" ] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret_file")
    printf '\n'
    sed -e "s|\"REPLACE-WITH-THE-CONTENT-OF-/etc/$bin/secret\"|\"$(cat "$secret_file")\"|" \
        -e "s|\.example\.org\"|.$DOMAIN\"|" "$REPO/deploy/prosody/${bin#xmpp-}.cfg.lua"
  done
} > "$CFG"
chmod 600 "$CFG"

# ---------------------------------------------------------------- run
PIDS=()      # components first, Prosody last: stopped in reverse order
NAMES=()
PROSODY_PID=""
TAIL_PID=""

stop_pid() {  # SIGTERM, wait up to 5 s, then SIGKILL
  local pid=$1 name=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop on SIGTERM; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  trap - INT TERM EXIT
  log "stopping"
  [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null || true
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}" "${NAMES[$i]}"; done
  [ -n "$PROSODY_PID" ] && stop_pid "$PROSODY_PID" prosody
  log "stopped; logs are in $DEV_DIR/logs"
}
trap cleanup EXIT
# Ctrl-C / SIGTERM are the normal way to stop: clean up (EXIT trap) and exit 0.
trap 'exit 0' INT TERM

log "starting Prosody (c2s 127.0.0.1:$C2S_PORT, components 127.0.0.1:$COMPONENT_PORT); log: $DEV_DIR/logs/prosody.log"
printf '===== dev-stack: starting prosody at %s\n' "$(date -Is)" >> "$DEV_DIR/logs/prosody.log"
prosody_log_start=$(stat -c %s "$DEV_DIR/logs/prosody.log")
spawn prosody --config "$CFG" -F >> "$DEV_DIR/logs/prosody.log" 2>&1
PROSODY_PID=$!
for i in $(seq 200); do
  kill -0 "$PROSODY_PID" 2>/dev/null || die "Prosody exited; see $DEV_DIR/logs/prosody.log"
  c2s_ready && break
  [ "$i" -eq 200 ] && die "Prosody not ready after 20 s; see $DEV_DIR/logs/prosody.log"
  sleep 0.1
done
tail -c +$((prosody_log_start + 1)) "$DEV_DIR/logs/prosody.log" | grep -q "Failed to open server port" &&
  die "Prosody could not open a port; see $DEV_DIR/logs/prosody.log"

for user in alice bob; do
  prosodyctl --config "$CFG" register "$user" "$DOMAIN" "${user}pw" >/dev/null
done

start_component() {  # <binary> <domain> [extra flags...]
  local bin=$1 domain=$2 logf="$DEV_DIR/logs/$1.log" i start
  shift 2
  printf '===== dev-stack: starting %s at %s\n' "$bin" "$(date -Is)" >> "$logf"
  start=$(stat -c %s "$logf")    # only this run's lines count for readiness
  spawn "$BIN_DIR/$bin" --server "127.0.0.1:$COMPONENT_PORT" --domain "$domain" \
    --secret-file "$DEV_DIR/secrets/$domain" --log "$DEV_LOG" "$@" >> "$logf" 2>&1
  PIDS+=($!); NAMES+=("$bin")
  for i in $(seq 100); do
    tail -c +$((start + 1)) "$logf" | grep -q "handshake ok" && { log "$bin connected as $domain"; return 0; }
    kill -0 "${PIDS[-1]}" 2>/dev/null || die "$bin exited; its log ($logf):"$'\n'"$(tail -n 20 "$logf")"
    sleep 0.1
  done
  log "warning: $bin has not logged 'handshake ok' after 10 s; see $logf"
}
mkdir -p "$DEV_DIR/data"
# shellcheck disable=SC2086  # the entries' extra flags are split on purpose
for c in "${COMPONENTS[@]}"; do start_component $c; done

if [ "$PONG_WEB" = 1 ]; then
  pong_text="XMPPong in the browser: open http://127.0.0.1:$PONG_HTTP_PORT/ in two tabs, log in as
  alice@$DOMAIN / alicepw in one and bob@$DOMAIN / bobpw in the other (WebSocket
  ws://127.0.0.1:$HTTP_PORT/xmpp-websocket); leaderboard at http://127.0.0.1:$PONG_HTTP_PORT/leaderboard"
else
  pong_text="XMPPong: check in at pong.localhost (protocol: docs/pong-protocol.md); leaderboard at
  http://127.0.0.1:$PONG_HTTP_PORT/leaderboard"
fi
cat <<EOF

  Dev stack is up.
  Log in as alice@$DOMAIN / alicepw (or bob@$DOMAIN / bobpw) with any XMPP client on
  127.0.0.1:$C2S_PORT (no TLS, plain auth allowed), then send a message to echo.localhost.
  $pong_text
  Web presence: register with webstatus.localhost (or add it as a contact, or send it
  "help"); status pages are served at http://127.0.0.1:$WEBSTATUS_HTTP_PORT/
  Components connect to 127.0.0.1:$COMPONENT_PORT; their secrets are in $DEV_DIR/secrets/.
  Logs: $DEV_DIR/logs/   Press Ctrl-C to stop everything.

EOF

component_logs=()
for c in "${COMPONENTS[@]}"; do component_logs+=("$DEV_DIR/logs/${c%% *}.log"); done
tail -q -n 0 -F "${component_logs[@]}" &
TAIL_PID=$!

# Run until Ctrl-C, or until Prosody or a component exits on its own.
while true; do
  kill -0 "$PROSODY_PID" 2>/dev/null || die "Prosody exited; see $DEV_DIR/logs/prosody.log"
  for i in "${!PIDS[@]}"; do
    kill -0 "${PIDS[$i]}" 2>/dev/null || die "${NAMES[$i]} exited; see $DEV_DIR/logs/${NAMES[$i]}.log"
  done
  sleep 1
done
