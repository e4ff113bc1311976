"""``python -m tcomp``: the same command as ``tcomp`` (``python -m tcomp --help``)."""
import sys

from tcomp.tools.cli import main

sys.exit(main())
