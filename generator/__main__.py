"""`python -m generator` is the same program as the `kvmnet` command."""

import sys

from generator.cli import main

sys.exit(main())
