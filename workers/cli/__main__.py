"""``python -m aijobs.cli``."""

import sys

from aijobs.cli.main import main

sys.exit(main())
