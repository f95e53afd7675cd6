"""`python -m console.cli`: the same as the `gb10-console` command."""

import sys

from console.cli import main

sys.exit(main())
