import sys

from nst_batch.cli.main import main

sys.exit(main())
