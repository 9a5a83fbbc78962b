#!/usr/bin/env bash
# The Debian packages the local real node and its image builds need, installed when missing (as root; about
# 11 s): containerd + runc + the CNI plugins, iptables and conntrack for kube-proxy, buildah/podman/mmdebstrap for
# the images (e2e/images), iproute2 and nftables for set-up and teardown, redis-server for the GCS fault-tolerance
# tests (started by their fixtures, never as a system service).
set -euo pipefail
declare -A needs=(
  [containerd]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables [conntrack]=conntrack [nft]=nftables [ip]=iproute2
  [buildah]=buildah [podman]=podman [mmdebstrap]=mmdebstrap
  [redis-server]=redis-server
)
missing=()
for what in "${!needs[@]}"; do
  if [[ $what == /* ]]; then [[ -e $what ]] || missing+=("${needs[$what]}")
  else command -v "$what" >/dev/null || missing+=("${needs[$what]}"); fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "the local node needs these Debian packages, installed as root: ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
