"""`python -m headstart`: the same as the `headstart` command."""
import sys

from headstart.cli import main

sys.exit(main())
