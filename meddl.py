"""``python -m meddl``: the ``meddl`` command as a module, e.g. under ``torchrun --nproc-per-node N -m meddl ...``."""

import sys

from DLCommon.cli import main

if __name__ == "__main__":
    sys.exit(main())
