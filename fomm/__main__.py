import sys

from fomm.cli.main import main

sys.exit(main())
