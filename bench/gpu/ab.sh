#!/usr/bin/env bash
# Two builds of gpu_bench's roofs and matvec tables (`--matvec-only`, ~10 s each), alternated on
# one GPU machine so that both see the same card and clocks: A, B, A, B. Each GPU machine is
# fresh and figures move 10-30% between machines, so compare builds only within one run.
#
#   bench/gpu/ab.sh OLD_BIN NEW_BIN [OUT_DIR]      (default OUT_DIR: bench/gpu/results/ab)
#
# Build the two binaries beforehand (bench/gpu/README.md says how); the Vulkan set-up is
# run.sh's (.gl/*.deb unpacked where the machine lacks a loader, the NVIDIA ICD found).
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1 new=$2 out=${3:-bench/gpu/results/ab}
mkdir -p "$out"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if ! ldconfig -p | grep -q 'libvulkan.so.1' && compgen -G '.gl/*.deb' >/dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if ! "$old" --probe; then
  export VK_DRIVER_FILES=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1 || true)
  "$old" --probe
fi
for round in 1 2; do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    "$bin" --matvec-only --out "$out/$side-$round.json" > "$out/$side-$round.md"
    grep -E '\| output \||^\| model \| matrix \|' "$out/$side-$round.md" | sed "s/^/$side $round: /"
  done
done
