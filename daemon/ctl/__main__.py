"""`python -m alkomd.daemon.ctl`: alkomctl."""

import sys

from alkomd.daemon.ctl import main

sys.exit(main())
