"""Entry point of `python -m openai_utils`."""

import sys

from .cli import main

sys.exit(main())
