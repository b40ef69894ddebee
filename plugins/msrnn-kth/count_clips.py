"""Count the clips each KTH protocol cuts from the full public data, from KTH's 00sequences.txt alone.

    python plugins/msrnn-kth/count_clips.py 00sequences.txt [--json]

Uses the plugin's own cutting rules (msrnn_kth.clips), so the numbers are those a store prepared from all
599 public AVIs gives, provided every frame range lies inside its video (the file's ranges are taken as
they are; a prepared store clips them to the decoded frames, and `msrnn-zoo data info kth` shows its counts).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from msrnn_kth.clips import CUTS, clip_starts, persons
from msrnn_kth.files import read_sequences


def count(sequences: Path) -> dict[str, dict[str, dict[str, int]]]:
    """``{protocol: {split: {action: clips, ..., "total": clips}}}``."""
    ranges, _missing = read_sequences(sequences)
    result: dict[str, dict[str, dict[str, int]]] = {}
    for protocol, cut in CUTS.items():
        result[protocol] = {}
        for split in ("train", "test"):
            per_action: Counter[str] = Counter()
            for name, spans in ranges.items():
                person, action = int(name[6:8]), name.split("_")[1]
                if person in persons(split) and action in cut.actions:
                    per_action[action] += sum(len(clip_starts(cut, action, a, b)) for a, b in spans)
            result[protocol][split] = {**dict(sorted(per_action.items())), "total": sum(per_action.values())}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequences", type=Path, help="KTH's 00sequences.txt")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = count(args.sequences)
    if args.json:
        print(json.dumps(counts, indent=2))
        return
    for protocol, splits in counts.items():
        for split, actions in splits.items():
            detail = ", ".join(f"{a} {n}" for a, n in actions.items() if a != "total")
            print(f"{protocol:8s} {split:5s} {actions['total']:6d}  ({detail})")


if __name__ == "__main__":
    main()
