"""``python -m ckptlab.cli``: the same as the ``ckptlab`` command."""

import sys

from ckptlab.cli import main

sys.exit(main())
