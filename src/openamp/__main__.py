"""``python -m openamp`` runs the ``openamp`` command."""

import sys

from .cli import main

sys.exit(main())
