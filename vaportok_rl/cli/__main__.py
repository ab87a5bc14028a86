"""``python -m vaportok_rl.cli <subcommand> ...`` (e.g. under torchrun)."""

import sys

from vaportok_rl.cli import main

sys.exit(main())
