#!/usr/bin/env bash
# Set up everything renderchaos needs on a fresh Debian 12 machine (as root), idempotently:
#   * a container engine, chosen by RENDERCHAOS_ENGINE (auto, the default: a Docker engine if one
#     answers, else Podman + runc, configured; docker: Debian's docker.io, started on its own
#     socket by the runs that need it; podman). RENDERCHAOS_ENGINES="podman docker" prepares both
#     (the project's own tests run on both).
#   * ffmpeg on the host (ffprobe checks of rendered outputs, the render tests)
#   * mmdebstrap (local image builds where no registry answers)
#   * Chromium (Debian's) for the report's browser test
#   * .venv with renderchaos installed (editable) and its test/load/otel extras
#   * the images of the reference stack (official where pullable, else built; cached by hash;
#     a Docker engine next to podman takes podman's builds of the same recipe)
# Re-running it does nothing that is already done. Pass --no-images to skip image builds.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[setup] %s\n' "$*"; }
t0=$(date +%s)

engines=${RENDERCHAOS_ENGINES:-${RENDERCHAOS_ENGINE:-auto}}
engines=${engines//,/ }
docker_answers() {  # a Docker engine not started by us: DOCKER_HOST or the system socket
  command -v docker >/dev/null || return 1
  if [ -n "${DOCKER_HOST:-}" ]; then timeout 10 docker info >/dev/null 2>&1; return; fi
  [ -S /var/run/docker.sock ] && timeout 10 docker --host unix:///var/run/docker.sock info >/dev/null 2>&1
}
want_podman=0 want_docker=0
for e in $engines; do
  case "$e" in
    auto) if docker_answers; then want_docker=1; say "a Docker engine answers: using it"; else want_podman=1; fi ;;
    podman) want_podman=1 ;;
    docker) want_docker=1 ;;
    *) say "RENDERCHAOS_ENGINE(S)=$e: choose auto, docker or podman"; exit 2 ;;
  esac
done

need_pkgs=()
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)
if [ "$want_podman" = 1 ]; then
  command -v podman >/dev/null || need_pkgs+=(podman)
  command -v runc >/dev/null || need_pkgs+=(runc)
  command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
  # catatonit is only a Recommends of podman: without it every container started with an
  # init process fails ("container-init binary not found on the host")
  [ -x /usr/libexec/podman/catatonit ] || need_pkgs+=(catatonit)
  dpkg -s uidmap >/dev/null 2>&1 || need_pkgs+=(uidmap)
  # podman's network stack: containers-common depends only on the virtual container-network-stack,
  # which apt may satisfy otherwise; name the CNI plugins podman 4.3 is configured for
  dpkg -s containernetworking-plugins >/dev/null 2>&1 || need_pkgs+=(containernetworking-plugins)
fi
docker_pkgs=()
if [ "$want_docker" = 1 ] && ! docker_answers; then
  # Debian's engine, run by us on our own socket (renderchaos.provisioning.engine starts and stops it):
  # docker.io brings dockerd, containerd, runc and tini (docker-init, for --init)
  command -v dockerd >/dev/null || docker_pkgs+=(docker.io)
  command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
fi
if [ ${#need_pkgs[@]} -gt 0 ] || [ ${#docker_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing ${need_pkgs[*]} ${docker_pkgs[*]}: run this script as root (or install them) and re-run"; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing ${need_pkgs[*]} (about 30-60 s)"
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
  if [ ${#docker_pkgs[@]} -gt 0 ]; then
    say "installing ${docker_pkgs[*]} (about 10 s); its system service is not started"
    # the package's init script would start a dockerd on /var/run/docker.sock with a bridge
    # and iptables rules: keep it from starting anything while it installs
    policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
    apt-get install -y -qq --no-install-recommends "${docker_pkgs[@]}" >/dev/null || { [ "$created_policy" = 1 ] && rm -f "$policy"; exit 1; }
    [ "$created_policy" = 1 ] && rm -f "$policy"
  fi
fi

# Debian's Chromium, and a CJK font for the runbooks' Chinese titles: tests/report opens
# report.html in it headless (Playwright drives /usr/bin/chromium; it downloads no browser)
browser_pkgs=()
command -v chromium >/dev/null || browser_pkgs+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "ok installed" || browser_pkgs+=(fonts-wqy-microhei)
if [ ${#browser_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing ${browser_pkgs[*]} (the report's browser test needs them): run this script as root or install them"
  else
    say "installing ${browser_pkgs[*]} (about 30-60 s)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${browser_pkgs[@]}" >/dev/null
  fi
fi

if [ "$want_podman" = 1 ]; then
  # crun fails on this kernel ("cgroups in hybrid mode") and the sandbox lacks
  # CAP_SYS_RESOURCE, so default ulimits must not exceed the host's.
  conf=/etc/containers/containers.conf
  if ! grep -q 'runtime = "runc"' "$conf" 2>/dev/null; then
    mkdir -p /etc/containers
    [ -f "$conf" ] && cp "$conf" "$conf.before-renderchaos"
    cat > "$conf" <<'CONF'
# written by renderchaos scripts/setup.sh (previous file, if any: containers.conf.before-renderchaos)
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
    say "configured podman: runtime runc, ulimits within the host's"
    # a podman API service started before this change would not have read it
    pkill -f "podman system service .*renderchaos" 2>/dev/null || true
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.renderchaos-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing renderchaos and its dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,load,stack,otel]' 2>&1 | grep -v '^WARNING: Location' || true
  echo "$want" > "$stamp"
fi

if [ "${1:-}" != "--no-images" ]; then
  # podman first: a Docker engine on this machine then takes podman's builds instead of rebuilding
  if [ "$want_podman" = 1 ]; then .venv/bin/python -m renderchaos.provisioning.engine build --engine podman; fi
  if [ "$want_docker" = 1 ]; then .venv/bin/python -m renderchaos.provisioning.engine build --engine docker; fi
  # prove it: one throwaway container started the way the stack starts them (init, host
  # network, uid 1000, a memory limit); a broken engine is one clear error here, not 40 later
  if [ "$want_podman" = 1 ]; then RENDERCHAOS_ENGINE=podman .venv/bin/python -m renderchaos.provisioning.proof; fi
  if [ "$want_docker" = 1 ]; then RENDERCHAOS_ENGINE=docker .venv/bin/python -m renderchaos.provisioning.proof; fi
fi
say "ready in $(( $(date +%s) - t0 )) s"
