import sys

from loragen.api.cli import main

sys.exit(main())
