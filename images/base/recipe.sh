#!/usr/bin/env bash
# Minimal Debian bookworm root filesystem, used as the base of every locally built image
# where no registry is reachable. The image tag is a hash of this file: edit it and the
# base (and every image built on it) is rebuilt.
# usage: recipe.sh OUT.tar
set -euo pipefail
exec mmdebstrap --quiet --variant=minbase \
  --include=ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  bookworm "$1" http://deb.debian.org/debian
