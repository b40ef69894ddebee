"""``python -m msrnn_zoo``: the ``msrnn-zoo`` command, for an environment whose scripts folder is not on PATH (a venv
not activated, ``pip install --user``), the way ``python -m pip`` stands for ``pip``."""

from .cli import main

if __name__ == "__main__":
    main()
