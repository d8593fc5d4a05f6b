#!/usr/bin/env bash
# Install the edge agent on a Raspberry Pi OS / Jetson Linux (or any Debian-like) board.
#
#   sudo tools/install_agent.sh [--key fleet-key.pub] [--device-type rpi4] [--source SPEC]
#                               [--wheel PATH | --checkout DIR] [--runtime tflite|onnx|both] [--dry-run]
#
# Installs the agent from a wheel (--wheel dist/edgekit_sdk-*.whl) or a checkout of this
# repository (--checkout DIR; default: the checkout this script is in), never by name from
# the package index. --runtime picks the runtime extra: tflite (LiteRT, the default), onnx
# (ONNX Runtime) or both. Needs a 64-bit board (aarch64 or x86_64) with Python >= 3.10.
# Creates a dedicated system user `edge-agent`, a venv in /opt/edge-agent/venv with
# edgekit-sdk[agent-tflite] (or the chosen extra), the model store /var/lib/edge-agent
# (owned by that user, with the trusted public keys in keys/), /etc/edge-agent/agent.toml,
# and the systemd unit
# tools/edge-agent.service (Restart=on-failure, ProtectSystem=strict, NoNewPrivileges).
# --dry-run prints every command instead of running it.
set -euo pipefail

PREFIX=/opt/edge-agent
STORE=/var/lib/edge-agent
ETC=/etc/edge-agent
UNIT_DIR=/etc/systemd/system
USER_NAME=edge-agent
WHEEL=""
CHECKOUT=""
RUNTIME=tflite
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
    --wheel) WHEEL="$2"; shift 2 ;;
    --checkout) CHECKOUT="$2"; shift 2 ;;
    --runtime) RUNTIME="$2"; shift 2 ;;
    --package)
      echo "install_agent.sh: --package is gone: a name looked up in the package index can be an" \
           "unrelated project; give --wheel PATH or --checkout DIR" >&2
      exit 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
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

# The board: LiteRT and ONNX Runtime publish wheels for 64-bit ARM and x86 only.
MACHINE="$(uname -m)"
case "$MACHINE" in
  aarch64|arm64|x86_64) ;;
  armv6*|armv7*|armv8l|armhf|arm)
    echo "install_agent.sh: this is a 32-bit ARM system ($MACHINE): LiteRT and ONNX Runtime" \
         "publish no wheels for it, so the agent cannot run a model here. Install a 64-bit OS" \
         "(Raspberry Pi OS 64-bit on a Pi 3/4/5/Zero 2, Ubuntu arm64) and run this again." >&2
    exit 2 ;;
  *)
    echo "install_agent.sh: unsupported machine $MACHINE: LiteRT and ONNX Runtime publish wheels" \
         "for aarch64 and x86_64 only" >&2
    exit 2 ;;
esac
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "install_agent.sh: the agent needs Python 3.10 or newer; python3 is" \
       "$(python3 -V 2>&1 || echo missing)" >&2
  exit 2
fi
case "$RUNTIME" in
  tflite) EXTRA=agent-tflite ;;
  onnx) EXTRA=agent-onnx ;;
  both) EXTRA=agent ;;
  *) echo "install_agent.sh: --runtime $RUNTIME: expected tflite, onnx or both" >&2; exit 2 ;;
esac
# What pip installs: a wheel file or a checkout with the extra, never a name from the index.
if [ -n "$WHEEL" ] && [ -n "$CHECKOUT" ]; then
  echo "install_agent.sh: give --wheel or --checkout, not both" >&2; exit 2
fi
if [ -n "$WHEEL" ]; then
  case "$WHEEL" in
    *.whl) [ -f "$WHEEL" ] || { echo "install_agent.sh: wheel $WHEEL not found" >&2; exit 2; } ;;
    *) echo "install_agent.sh: --wheel $WHEEL: expected a .whl file (build one with: python3 -m pip wheel --no-deps -w dist .)" >&2; exit 2 ;;
  esac
  SRC="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
else
  SRC="$(cd "${CHECKOUT:-$HERE/..}" 2>/dev/null && pwd || true)"
  if [ -z "$SRC" ] || ! grep -q '^name = "edgekit-sdk"' "$SRC/pyproject.toml" 2>/dev/null; then
    echo "install_agent.sh: ${CHECKOUT:-$HERE/..} is not a checkout of edgekit-sdk (no pyproject.toml" \
         "naming it); give --wheel PATH or --checkout DIR" >&2
    exit 2
  fi
fi
PACKAGE="$SRC[$EXTRA]"

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
# username = "default/pi-01"   # FLEET/ID: what edge fleet add-device prints
# password_file = "$ETC/broker.password"
# ca_file = "$ETC/ca.crt"

[telemetry]
outbox = "$STORE/outbox.db"
TOML
fi

run install -D -m 0644 "$HERE/edge-agent.service" "$UNIT_DIR/edge-agent.service"
if [ "$DRY" = 1 ] || command -v systemctl >/dev/null; then
  # daemon-reload needs a running systemd; enable only writes links (works in a chroot too).
  if [ "$DRY" = 1 ] || [ -d /run/systemd/system ]; then run systemctl daemon-reload; fi
  run systemctl enable edge-agent.service
else
  echo "install_agent.sh: no systemctl here; the unit is in $UNIT_DIR, enable it where systemd runs" >&2
fi
echo "installed. Put a model in the store (edge flash BUNDLE --to $STORE --key KEY.pub, or"
echo "edge-agent install BUNDLE --store $STORE), then: sudo systemctl start edge-agent"
