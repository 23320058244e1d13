#!/usr/bin/env bash
# npm run setup: installs every real part the tests and the demo use. Idempotent: a part
# already installed at its pinned version is skipped. Pins live in the files named below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# time: GNU time measures wall time and peak RSS in the benchmarks. busybox … fuse3 build the
# test guests (boot images, inspection images) without loop mounts; libvirt-clients validates
# rendered domain XML. libguestfs-tools (its appliance boots linux-image-amd64) applies the guest
# fixups; mmdebstrap builds the Debian test guest they are tested on; virt-v2v (with nbdkit and
# nbdcopy, which it runs) is their peer in `npm run compare:v2v`.
APT_PACKAGES=(qemu-utils qemu-system-x86 ovmf bzip2 time
  busybox-static cpio syslinux syslinux-common extlinux mtools dosfstools grub-efi-amd64-bin grub-pc-bin grub-common
  e2fsprogs fdisk gdisk xfsprogs btrfs-progs ntfs-3g libvirt-clients libxml2-utils xz-utils zstd fuse3
  libguestfs-tools linux-image-amd64 mmdebstrap virt-v2v nbdkit libnbd-bin)
PULUMI_VERSION=$(awk '$1 == "github.com/pulumi/pulumi/pkg/v3" { sub(/^v/, "", $2); print $2 }' tools/pulumi/go.mod)
PULUMI_BIN="$HOME/.pulumi/versions/$PULUMI_VERSION/bin"
GOVMOMI_VERSION=$(awk '$1 == "github.com/vmware/govmomi" { print $2 }' tools/vcsim/go.mod)
MOTO_VERSION=$(sed -n 's/^moto\[server\]==//p' tools/moto/requirements.txt)

export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_SKIP_UPDATE_CHECK=true

total_start=$(date +%s.%N)
step() {
  local name=$1
  shift
  local start
  start=$(date +%s.%N)
  echo "==> $name"
  "$@"
  echo "    $name: $(seconds_since "$start")"
}
seconds_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1fs", e - s }'; }
skip() { echo "    already installed: $*"; }
need() { command -v "$1" >/dev/null || { echo "setup: '$1' is required but not on PATH ($2)" >&2; exit 1; }; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

npm_deps() {
  local stamp=node_modules/.pw-setup-stamp want
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -x node_modules/.bin/node ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    skip "node_modules matches package-lock.json"
    return
  fi
  npm ci --no-audit --no-fund
  echo "$want" >"$stamp"
  echo "    node $(node_modules/.bin/node --version) (npm scripts run on it)"
}

apt_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    skip "${APT_PACKAGES[*]}"
    return
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

pulumi_cli() {
  need go "Go 1.26 builds the Pulumi CLI and vcsim"
  if [ "$("$PULUMI_BIN/pulumi" version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
    skip "pulumi v$PULUMI_VERSION"
  else
    mkdir -p "$PULUMI_BIN"
    # The version ldflag matters: without it the CLI reports v0.0.0-dev and the
    # Automation API refuses it as too old.
    (cd tools/pulumi && go build -trimpath \
      -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      -o "$PULUMI_BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    mv "$PULUMI_BIN/pulumi.tmp" "$PULUMI_BIN/pulumi"
    echo "    built $("$PULUMI_BIN/pulumi" version) into $PULUMI_BIN"
  fi
  # The dynamic-provider plugin: the engine finds it next to the CLI. Ours (not the one
  # @pulumi/pulumi ships) picks Node 24 and finds @pulumi/pulumi in this checkout by itself.
  sed "s|@REPO@|$ROOT|" tools/pulumi/pulumi-resource-pulumi-nodejs >"$PULUMI_BIN/pulumi-resource-pulumi-nodejs.tmp"
  chmod 0755 "$PULUMI_BIN/pulumi-resource-pulumi-nodejs.tmp"
  mv "$PULUMI_BIN/pulumi-resource-pulumi-nodejs.tmp" "$PULUMI_BIN/pulumi-resource-pulumi-nodejs"
  echo "    pulumi-language-nodejs: not served by the Go module proxy; inline programs only (see README)"
}

vcsim() {
  need go "Go 1.26 builds the Pulumi CLI and vcsim"
  local stamp=.tools/bin/vcsim.version
  if [ -x .tools/bin/vcsim ] && [ "$(cat "$stamp" 2>/dev/null)" = "$GOVMOMI_VERSION" ]; then
    skip "vcsim (govmomi $GOVMOMI_VERSION)"
    return
  fi
  mkdir -p .tools/bin
  (cd tools/vcsim && go build -trimpath -o "$ROOT/.tools/bin/vcsim" github.com/vmware/govmomi/vcsim)
  echo "$GOVMOMI_VERSION" >"$stamp"
}

moto() {
  need python3 "Python 3 runs moto"
  local have
  have=$(.tools/venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true)
  if [ "$have" = "$MOTO_VERSION" ] && [ -x .tools/venv/bin/moto_server ]; then
    skip "moto $MOTO_VERSION"
    return
  fi
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check -r tools/moto/requirements.txt
}

guest_kernel() {
  # Test guests boot and are inspected with Debian's own kernel package, unpacked, never installed.
  local name
  name=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
  if ls .tools/cache/"$name"_*_amd64.deb >/dev/null 2>&1; then
    skip "$name"
    return
  fi
  mkdir -p .tools/cache
  (cd .tools/cache && apt-get download "$name")
}

test_guest() {
  # A real Debian 12 guest as VMware leaves it (tests/harness/debian-guest.ts), cached by its inputs.
  node_modules/.bin/node tests/harness/debian-guest.ts
}

azurite() {
  [ -x node_modules/.bin/azurite-blob ] || { echo "setup: azurite-blob missing after npm ci" >&2; exit 1; }
  echo "    azurite $(node_modules/.bin/node -p 'require("./node_modules/azurite/package.json").version') (npm devDependency)"
}

step "npm dependencies" npm_deps
step "Debian packages" apt_packages
step "Pulumi CLI v$PULUMI_VERSION" pulumi_cli
step "vcsim (govmomi $GOVMOMI_VERSION)" vcsim
step "moto $MOTO_VERSION" moto
step "Azurite" azurite
step "guest kernel" guest_kernel
step "Debian test guest" test_guest
echo "==> setup done in $(seconds_since "$total_start")"
