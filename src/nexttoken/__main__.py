"""``python -m nexttoken generate "PROMPT"`` / ``python -m nexttoken train`` (see nexttoken.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
