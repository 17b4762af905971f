"""``python -m bencao.cli``: the ``bencao`` command."""

import sys

from bencao.cli import main

sys.exit(main())
