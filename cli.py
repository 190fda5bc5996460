"""The ``nasp`` command from a source tree (``python cli.py ...``): the command itself is ``nasp.cli``."""
from nasp.cli import main

if __name__ == "__main__":
    main()
