"""The license a model card claims in its YAML header, checked against the identifiers the Hub knows.

Weights a user trained are theirs to license, so ``card``, ``push``, ``reproduce`` and the Python API's
``save_pretrained`` / ``push_to_hub`` take one; :data:`DEFAULT_LICENSE` is the project's own (pyproject.toml).
An id the Hub does not know would be published as a license no one can look up, so it is refused with the
ids it resembles.
"""

from __future__ import annotations

import difflib

DEFAULT_LICENSE = "apache-2.0"
"""The license a card claims unless the user chooses one: the project's own."""

HUB_LICENSES = (
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc",
    "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa",
    "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "llama2", "gemma", "unknown", "other",
)
"""The license identifiers the Hub accepts in a card, as https://huggingface.co/docs/hub/repositories-licenses lists
them (copied on 2026-12-08 from that page's source, docs/hub/repositories-licenses.md of github.com/huggingface/
hub-docs at commit 008d54d). The Hub adds ids now and then: add them here as they appear there."""

OTHER = "other"


def check_license(license: str) -> str:
    """``license`` as the card's YAML writes it (the Hub's ids are lower case: ``MIT`` is ``mit``), else a
    ``ValueError`` naming the ids it resembles.

    ``other`` is refused too: the Hub then wants the license's name and link beside it and its text in the repo,
    which a card written by hand says better than options would."""
    if not isinstance(license, str):
        raise TypeError(f"license= takes a Hub license id such as {DEFAULT_LICENSE!r}, not {type(license).__name__}.")
    chosen = license.strip().lower()
    if chosen == OTHER:
        raise ValueError(
            "msrnn-zoo does not write cards with `license: other`: the Hub then wants the license's name and link "
            "(license_name, license_link in the card's YAML header) and its text in a LICENSE file of the repo. Render "
            "the card (`msrnn-zoo card RUN --repo-id USER/NAME`), set those three lines in its header, and push it "
            "with `msrnn-zoo push RUN USER/NAME --card RUN/README.md` (from Python: push_to_hub(repo_id, card=TEXT, "
            "extra_files={'LICENSE': PATH})).")
    if chosen in HUB_LICENSES:
        return chosen
    close = difflib.get_close_matches(chosen, [x for x in HUB_LICENSES if x != OTHER], n=4, cutoff=0.6)
    hint = f" Did you mean {', '.join(close[:-1])} or {close[-1]}?" if len(close) > 1 else \
        f" Did you mean {close[0]}?" if close else ""
    raise ValueError(f"{license!r} is not a license id the Hub knows.{hint} The ids are listed at "
                     "https://huggingface.co/docs/hub/repositories-licenses (`mit`, `cc-by-4.0`, "
                     f"`{DEFAULT_LICENSE}`...); for a license not among them, write the card yourself with "
                     "`license: other`, `license_name:` and `license_link:` in its header and push it with --card.")
