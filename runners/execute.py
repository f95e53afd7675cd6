"""`python -m runners.execute RUN_DIR`: the detached runner's command line, kept stable for consoles and scripts.

The runner itself is `runners.soak.execute`; this module is only its name on a command line.
"""

import sys

from runners.soak.execute import main

if __name__ == "__main__":
    sys.exit(main())
