"""Makes the raw-format writers in ``germany_files.py`` importable by this plugin's tests.

Tests run with ``--import-mode=importlib``, which leaves ``sys.path`` alone; the helper module has a name no
other test folder uses, so putting this folder on the path cannot shadow anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
