"""``python -m resnet_gluon``: the command line (see :mod:`resnet_gluon.cli`)."""
import sys

from .cli import main

sys.exit(main())
