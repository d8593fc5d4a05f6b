"""Train the digits LeNet-5 and write it with its fixed train/test split.

    python examples/digits/train.py OUT_DIR

writes OUT_DIR/lenet5.keras, OUT_DIR/train.npz and OUT_DIR/test.npz (x: 28×28×1 floats
in [0, 1], y: labels). Takes a few seconds on two cores.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edge_sdk.demo.digits import train


def main(argv: list[str]) -> int:
    out = argv[1] if len(argv) > 1 else "digits-out"
    art = train(out)
    print(f"model {art.model} (test accuracy {art.test_accuracy}%)")
    print(f"data  {art.train} {art.test}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
