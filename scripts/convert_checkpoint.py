"""Converts checkpoints between Hugging Face model folders and jaxlab checkpoints.

    python scripts/convert_checkpoint.py hf-to-jaxlab SRC DST [--dtype D]
    python scripts/convert_checkpoint.py jaxlab-to-hf SRC DST [--architecture A] [--dtype D]

The same command as ``jaxlab convert ...`` (see :mod:`jaxlab.interop.convert`).
"""

from __future__ import annotations

import sys

from jaxlab.interop.convert import convert_main

if __name__ == "__main__":
    sys.exit(convert_main(sys.argv[1:]))
