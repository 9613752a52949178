import sys

from jaxlab.cli import main

sys.exit(main())
