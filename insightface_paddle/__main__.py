"""`python -m insightface_paddle` runs the CLI from a checkout without installing it."""

import sys

from .cli import main

sys.exit(main())
