#!/usr/bin/env bash
# Set up emptcp on a Debian/Ubuntu machine, as root: system packages, a venv in
# .venv with emptcp and its plugins, and bpffs mounted. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (loading BPF programs needs CAP_BPF and CAP_NET_ADMIN)" >&2
    exit 1
fi

pkgs=(clang llvm libbpf-dev bpftool iproute2 ethtool iputils-ping tcpdump tshark libcap2-bin
      python3-venv python3-dev gcc make
      # the kernel matrix (python -m tests.kernels): virtme-ng boots kernels in qemu; depmod
      # and modprobe (kmod) for the guest's modules; udev makes the guest's stdio ports
      qemu-system-x86 busybox-static kmod udev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip setuptools wheel
rm -rf build  # setuptools reuses ./build/lib: a module moved since the last install would linger
.venv/bin/pip install -q ".[test]"
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && .venv/bin/pip install -q "$plugin"
done
.venv/bin/pip install -q virtme-ng   # vng, for the kernel matrix (python -m tests.kernels)
echo "emptcp installed in $(pwd)/.venv — try: .venv/bin/emptcp --help"
