"""`python -m vcmbench ...`: the same commands as the `vcmbench` script."""

import sys

from vcmbench.cli import main

sys.exit(main())
