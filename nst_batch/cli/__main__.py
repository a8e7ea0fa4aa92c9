"""``python -m nst_batch.cli``: the ``nst`` command."""

import sys

from nst_batch.cli.main import main

sys.exit(main())
