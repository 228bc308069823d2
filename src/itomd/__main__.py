import sys

from itomd.cli import main

sys.exit(main())
