"""``python -m lemonkit`` is the ``lemonkit`` command."""

import sys

from lemonkit.cli import main

sys.exit(main())
