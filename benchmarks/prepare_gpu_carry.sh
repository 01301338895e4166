#!/usr/bin/env bash
# Prepare the git-ignored folders that `python -m benchmarks.gpu` needs on the device machine
# (docs/benchmarks.md gives the device call that carries them):
#   .whl/       wheels of the packages that machine lacks (pyro-ppl, pyro-api, nflows), at the
#               versions installed here, for its Python 3.12; pip there installs them offline;
#   .gpu_data/  MNIST's four .gz files, copied from $FLOWVAE_DATA/MNIST/raw.
# Everything else flowvae needs (torch, torchvision, numpy, opt-einsum, tqdm, matplotlib,
# tensorboard, scikit-learn, pytest, hypothesis) is on that machine already
# (/work/.library/device/KINDS.md). The working tree plus both folders must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p .whl
rm -f .whl/*.whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
for name in pyro-ppl pyro-api nflows; do
    spec="$name==$(version "$name")"
    if ! "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp "${platforms[@]}" -d .whl "$spec"; then
        # a pure-Python project published as a source archive only: build its wheel here
        "$py" -m pip wheel -q --no-deps -w .whl "$spec"
    fi
done
ls .whl/*.whl | wc -l | xargs test 3 -eq || { echo "expected 3 wheels in .whl" >&2; exit 1; }

data=${FLOWVAE_DATA:-../shared/data}
mkdir -p .gpu_data/MNIST/raw
cp "$data"/MNIST/raw/*-ubyte.gz .gpu_data/MNIST/raw/
test "$(ls .gpu_data/MNIST/raw/*.gz | wc -l)" -eq 4 || { echo "MNIST .gz files missing" >&2; exit 1; }

tree_kib=$(git ls-files -co --exclude-standard -z | du -ck --files0-from=- | tail -1 | cut -f1)
carry_kib=$(du -sk .whl .gpu_data | awk '{s += $1} END {print s}')
echo "wheels: $(ls .whl | tr '\n' ' ')"
echo "working tree $((tree_kib / 1024)) MiB + carried $((carry_kib / 1024)) MiB" \
     "= $(((tree_kib + carry_kib) / 1024)) MiB (limit 64 MiB)"
test $((tree_kib + carry_kib)) -lt $((64 * 1024)) || { echo "over 64 MiB" >&2; exit 1; }
