"""``python -m captum_prior``: the command line (see :mod:`captum_prior.cli`)."""

import sys

from captum_prior.cli import main

if __name__ == "__main__":
    sys.exit(main())
