"""Every pyproject declares its license as an SPDX string (a TOML table makes setuptools print a deprecation
block per build) and asks for a setuptools that understands it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECTS = sorted([REPO / "pyproject.toml", *(REPO / "plugins").glob("*/pyproject.toml")])


@pytest.mark.parametrize("path", PYPROJECTS, ids=lambda p: str(p.relative_to(REPO)))
def test_license_is_an_spdx_string(path):
    text = path.read_text()
    assert '\nlicense = "Apache-2.0"\n' in text, f"{path}: write license = \"Apache-2.0\" (an SPDX string)"
    assert 'requires = ["setuptools>=77"]' in text, f"{path}: the SPDX license needs setuptools>=77 to build"
