"""One or two examples per ``edge`` command, shown at the end of its ``--help``.

Kept in one table (command path → lines) rather than in each command's docstring, so a
test can check that every command has examples and that their options exist.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "inspect": (
        "edge inspect model.keras            # inputs, outputs, parameters, MACs",
        "edge inspect digits.edgepkg --json  # a bundle's manifest, as JSON",
    ),
    "optimize": (
        "edge optimize model.keras --data train.npz --int8 -o digits.edgepkg",
        "edge optimize model.keras --data train.npz --max-drop 0.5 -o small.edgepkg",
    ),
    "demo": (
        "edge demo                 # train, optimize, serve, run a small fleet",
        "edge demo --out demo/     # keep the files",
    ),
    "collector": (
        "edge collector --broker mqtt://127.0.0.1:1883 --db fleet.db",
        "edge collector --broker mqtts://broker:8883 --tls-ca ca.crt --username collector "
        "--password-file collector.password --db fleet.db --http 127.0.0.1:8080 --homeassistant",
    ),
    "broker": ("edge broker --port 1883",),
    "eval": (
        "edge eval digits.edgepkg                  # its own validation set",
        "edge eval digits.edgepkg --data test.npz  # accuracy on labelled data",
    ),
    "bench": (
        "edge bench digits.edgepkg --runs 500",
        "edge bench model.tflite --data test.npz --batch 8 --json",
    ),
    "verify": ("edge verify m-1.2.0.edgepkg --key fleet-key.pub",),
    "sign": ("edge sign m.edgepkg --key fleet-key -o m-1.2.0.edgepkg",),
    "flash": ("edge flash m-1.2.0.edgepkg --to /media/sdcard/var/lib/edge-agent --key fleet-key.pub",),
    "deploy": (
        "edge deploy m-1.2.0.edgepkg --broker mqtt://broker:1883 --device pi-01",
        "edge deploy m-1.2.0.edgepkg --broker mqtt://broker:1883 --group lab --canary 10",
    ),
    "fleet status": ("edge fleet status --db fleet.db", "edge fleet status --db fleet.db --json"),
    "fleet watch": ("edge fleet watch --db fleet.db --interval 5",),
    "fleet history": ("edge fleet history pi-01 --db fleet.db --limit 20",),
    "fleet alerts": ("edge fleet alerts --db fleet.db --offline-after 300",),
    "fleet rollouts": ("edge fleet rollouts --db fleet.db",),
    "pack": (
        "edge pack detector.tflite --output-kind detection --labels labels.txt -o det.edgepkg --key fleet-key",
        "edge pack text.onnx --data inputs.npz --int8 -o text.edgepkg",
    ),
    "fleet ui": ("edge fleet ui --db fleet.db --http 127.0.0.1:8080",),
    "fleet retire": ("edge fleet retire pi-01 --db fleet.db --broker mqtt://127.0.0.1:1883",),
    "fleet add-device": ("edge fleet add-device pi-01 --fleet lab   # prints its password once",),
    "fleet add-user": (
        "edge fleet add-user collector --role collector --password-from collector.password",
        "edge fleet add-user deployer --role deployer --fleet lab --password-from deployer.password",
    ),
    "keys new": ("edge keys new --out fleet-key   # fleet-key (private) and fleet-key.pub",),
}
