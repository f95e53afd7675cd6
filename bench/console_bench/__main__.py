"""`python -m bench.console_bench`: the console benchmark's command line (`cli.main`)."""

import sys

from bench.console_bench.cli import main

sys.exit(main())
