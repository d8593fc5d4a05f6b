#!/usr/bin/env bash
# Install the edge agent on a Raspberry Pi OS / Jetson Linux (or any Debian-like) board.
#
#   sudo tools/install_agent.sh [--key fleet-key.pub] [--device-type rpi4] [--source SPEC]
#                               [--wheel PATH|--package SPEC] [--dry-run]
#
# Creates a dedicated system user `edge-agent`, a venv in /opt/edge-agent/venv with
# edge-sdk[agent], the model store /var/lib/edge-agent (owned by that user, with the
# trusted public keys in keys/), /etc/edge-agent/agent.toml, and the systemd unit
# tools/edge-agent.service (Restart=on-failure, ProtectSystem=strict, NoNewPrivileges).
# --dry-run prints every command instead of running it.
set -euo pipefail

PREFIX=/opt/edge-agent
STORE=/var/lib/edge-agent
ETC=/etc/edge-agent
UNIT_DIR=/etc/systemd/system
USER_NAME=edge-agent
PACKAGE="edge-sdk[agent]"
KEYS=()
DEVICE_TYPE=""
SOURCE=""
DRY=0
HERE="$(cd "$(dirname "$0")" && pwd)"

while [ $# -gt 0 ]; do
  case "$1" in
    --key) KEYS+=("$2"); shift 2 ;;
    --device-type) DEVICE_TYPE="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    --wheel) PACKAGE="$2[agent]"; shift 2 ;;
    --package) PACKAGE="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install_agent.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

run() {
  if [ "$DRY" = 1 ]; then echo "+ $*"; else "$@"; fi
}

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install_agent.sh: run as root (sudo); it creates a user and a systemd unit" >&2
  exit 2
fi
for k in "${KEYS[@]}"; do
  [ -f "$k" ] || { echo "install_agent.sh: public key $k not found" >&2; exit 2; }
done

# Python venv support: Raspberry Pi OS and JetPack ship python3 but not always venv.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  run apt-get install -y python3-venv
fi
if ! id "$USER_NAME" >/dev/null 2>&1; then
  run useradd --system --home-dir "$STORE" --shell /usr/sbin/nologin "$USER_NAME"
fi
for g in video i2c dialout gpio; do
  if getent group "$g" >/dev/null; then run usermod -aG "$g" "$USER_NAME"; fi
done

run install -d -m 0755 "$PREFIX" "$ETC"
run python3 -m venv "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install --upgrade pip
run "$PREFIX/venv/bin/pip" install "$PACKAGE"

run install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STORE" "$STORE/slots" "$STORE/staging" "$STORE/keys"
for k in "${KEYS[@]}"; do
  name="$(basename "$k" .pub).pub"  # the agent trusts STORE/keys/*.pub
  run install -m 0644 -o "$USER_NAME" -g "$USER_NAME" "$k" "$STORE/keys/$name"
done
if [ -n "$DEVICE_TYPE" ]; then
  if [ "$DRY" = 1 ]; then
    echo "+ write $STORE/device.json device_type=$DEVICE_TYPE"
  else
    printf '{"device_type": "%s"}\n' "$DEVICE_TYPE" > "$STORE/device.json"
    chown "$USER_NAME:$USER_NAME" "$STORE/device.json"
  fi
fi
# The agent's configuration: a small agent.toml (kept when it exists) and the fully
# commented example beside it (every key: device id, broker, TLS, password file, ...).
run install -m 0644 "$HERE/agent.toml" "$ETC/agent.toml.example"
if [ "$DRY" = 1 ]; then
  echo "+ write $ETC/agent.toml store=$STORE source=${SOURCE:-<set me>}"
elif [ ! -f "$ETC/agent.toml" ]; then
  cat > "$ETC/agent.toml" <<TOML
# edge-agent configuration; every key is explained in $ETC/agent.toml.example.
[agent]
store = "$STORE"
# device_id = "pi-01"
# fleet = "default"

[serve]
source = "${SOURCE:-file:/var/lib/edge-agent/input.npz?rate=10&loop=1}"
quiet = true

# [broker]
# url = "mqtts://broker.example.net:8883"
# username = "pi-01"
# password_file = "$ETC/broker.password"
# ca_file = "$ETC/ca.crt"

[telemetry]
outbox = "$STORE/outbox.db"
TOML
fi

run install -m 0644 "$HERE/edge-agent.service" "$UNIT_DIR/edge-agent.service"
run systemctl daemon-reload
run systemctl enable edge-agent.service
echo "installed. Put a model in the store (edge flash BUNDLE --to $STORE --key KEY.pub, or"
echo "edge-agent install BUNDLE --store $STORE), then: sudo systemctl start edge-agent"
