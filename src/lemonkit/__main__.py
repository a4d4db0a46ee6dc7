"""``python -m lemonkit`` is the ``lemonkit`` command."""

import sys

from lemonkit.cli.main import main

sys.exit(main())
