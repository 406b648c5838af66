#!/usr/bin/env bash
# The prepared benchmark for a real GPU (issue #3), natively through Vulkan, in one run:
# adapter, copy bandwidth, matvec GB/s per weight shape, whole-model prefill/decode for the
# default model's shapes and Qwen2.5-Coder-0.5B's (engine/examples/gpu_bench.rs says what and how).
#
#   bench/gpu/run.sh [OUT_DIR]          (default bench/gpu/results)
#
# BIN=path uses a prebuilt gpu_bench (a GPU machine without Rust); otherwise it is built here.
# A machine without a Vulkan loader can be handed one as .deb files in .gl/ (see bench/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-bench/gpu/results}
mkdir -p "$out"
bin=${BIN:-target/release/examples/gpu_bench}
if [ -z "${BIN:-}" ]; then cargo build --release -p nib-engine --example gpu_bench; fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

if ! ldconfig -p | grep -q 'libvulkan.so.1' && compgen -G '.gl/*.deb' >/dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>/dev/null || true

# Find the GPU's Vulkan driver: as installed, else the NVIDIA container layout.
if ! "$bin" --probe; then
  icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1 || true)
  echo "no adapter as installed; trying VK_DRIVER_FILES=$icd" >&2
  export VK_DRIVER_FILES=$icd
  "$bin" --probe || { find / -name '*icd*.json' -path '*vulkan*' 2>/dev/null | head; ldconfig -p | grep -i -E 'vulkan|nvidia' | head; exit 1; }
fi

"$bin" --out "$out/gpu_bench.json" | tee "$out/gpu_bench.md"

# The card's copy bandwidth as CUDA measures it (PyTorch, where the machine has it): the roof
# for the matvec kernels beside wgpu's own buffer copy above.
python3 - <<'PY' | tee "$out/cuda_copy.json" || echo "no PyTorch with CUDA here: CUDA copy bandwidth not measured"
import json, torch
n = 1 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
b = torch.empty_like(a)
for _ in range(3):
    b.copy_(a)
times = []
for _ in range(10):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize()
    times.append(s.elapsed_time(e) / 1e3)
t = sorted(times)[len(times) // 2]
print(json.dumps({"device": torch.cuda.get_device_name(), "cuda_copy_gb_s_read_plus_written": 2 * n / t / 1e9}))
PY
