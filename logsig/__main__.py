import sys

from logsig.cli import main

sys.exit(main())
