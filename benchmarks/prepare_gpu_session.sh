#!/usr/bin/env bash
# Prepare a checkout for benchmarks/gpu_session.sh: put the shared tools and an export of the original MS-RNN
# code into .gpu/ (ignored by git through .git/info/exclude), the one folder the device run carries.
#
#   bash benchmarks/prepare_gpu_session.sh /path/to/msrnn-original [../shared/tools]
#
# The original is never part of this repository (see ../shared/tools/README.md for exporting its Python files).
# Also written: .gpu/site/, one *.dist-info (name, version, entry points) per distribution of this checkout, so
# that the device can find ours and the plugins from the source tree (PYTHONPATH) if pip cannot install them.
set -euo pipefail
cd "$(dirname "$0")/.."
original=${1:?"give the folder of the original's exported Python files (see ../shared/tools/README.md)"}
tools=${2:-../shared/tools}
PY=${PY:-.venv/bin/python}
[ -f "$original/model.py" ] || { echo "$original does not look like an export of the original (no model.py)"; exit 2; }
marker=.gpu/.made-by-prepare_gpu_session
if [ -e .gpu ] || [ -L .gpu ]; then  # replace only a .gpu/ this script made: never a user's folder of that name
  if [ -L .gpu ] || [ ! -f "$marker" ]; then
    echo ".gpu exists and was not made by this script (no $marker); move it away, then run this again."; exit 2
  fi
  rm -rf .gpu
fi
mkdir -p .gpu/site
touch "$marker"
cp "$tools/gpu_bench.py" "$tools/orig_env.py" .gpu/
cp -r "$original" .gpu/msrnn-original
find .gpu/msrnn-original -name __pycache__ -prune -exec rm -rf {} +
"$PY" - <<'EOF'
import pathlib, tomllib

for pyproject in [pathlib.Path("pyproject.toml"), *sorted(pathlib.Path("plugins").glob("*/pyproject.toml"))]:
    project = tomllib.loads(pyproject.read_text())["project"]
    name, version = project["name"], project.get("version", "0")
    info = pathlib.Path(".gpu/site") / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, points in project.get("entry-points", {}).items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
EOF
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
echo "Ready ($(du -sh .gpu | cut -f1) to carry): run 'bash benchmarks/gpu_session.sh' on the device with carry [\".gpu\"]."
