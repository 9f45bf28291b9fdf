"""``python -m ckptlab``: the same as the ``ckptlab`` command (and ``python -m ckptlab.cli``)."""

import sys

from ckptlab.cli import main

sys.exit(main())
