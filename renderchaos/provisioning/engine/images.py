"""Images: official names by default, local builds from Debian packages where no registry answers.

Every locally built image is tagged ``localhost/renderchaos/<service>:<recipe hash>``. The hash
covers the recipe folder (``images/<service>/``, pinned requirements included) and the base
recipe; a warm run finds the tag and builds nothing. Cold builds run two at a time
and print progress every few seconds (they take minutes).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from renderchaos.provisioning.engine.engine import Engine
from renderchaos.errors import ConfigError, ImageBuildError

IMAGES_DIR = Path(__file__).resolve().parents[3] / "images"
LOG_DIR = Path.home() / ".cache" / "renderchaos" / "build-logs"
LOCAL_PREFIX = "localhost/renderchaos"
OFFICIAL_BASE = "docker.io/library/debian:bookworm-slim"
OFFICIAL_TOXIPROXY = "ghcr.io/shopify/toxiproxy:2.12.0"  # used when pullable; else our renderchaos_proxy
PULL_TIMEOUT_S = 120.0
PODMAN = "podman"
BUILD_TIMEOUT_S = 900.0

Progress = Callable[[str], None]


def _stderr_progress(line: str) -> None:
    print(f"[renderchaos] {line}", file=sys.__stderr__, flush=True)


@dataclass(frozen=True)
class ImageRecipe:
    service: str
    official: str | None  # image name in a public registry, if one exists
    needs_wheelhouse: bool = False

    @property
    def context(self) -> Path:
        return IMAGES_DIR / self.service


RECIPES: dict[str, ImageRecipe] = {
    r.service: r
    for r in (
        ImageRecipe("postgres", "docker.io/library/postgres:15-bookworm"),
        ImageRecipe("redis", "docker.io/library/redis:7-bookworm"),
        ImageRecipe("rabbitmq", "docker.io/library/rabbitmq:3.12"),
        ImageRecipe("app", None, needs_wheelhouse=True),
        ImageRecipe("prometheus", "docker.io/prom/prometheus:v2.42.0"),
    )
}

# Images of third-party platforms under test: built only when a run or
# `python -m renderchaos.provisioning.engine build NAME` names them, never by the default build.
EXTRA_RECIPES: dict[str, ImageRecipe] = {
    r.service: r
    for r in (
        ImageRecipe("unmanic", None, needs_wheelhouse=True),
    )
}


def recipe_for(service: str) -> ImageRecipe | None:
    return RECIPES.get(service) or EXTRA_RECIPES.get(service)


def _hash_paths(paths: Iterable[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(IMAGES_DIR)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def base_hash() -> str:
    return _hash_paths([IMAGES_DIR / "base"])


def recipe_hash(recipe: ImageRecipe) -> str:
    return _hash_paths([recipe.context], extra=base_hash())


@dataclass
class ImageResolver:
    """Maps each service to an image reference, pulling or building as needed."""

    engine: Engine
    progress: Progress = _stderr_progress
    prefer_official: bool = True
    overrides: dict[str, str] = field(default_factory=dict)
    _registry_ok: bool | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    copy_from_podman: bool = True  # a Docker engine takes podman's local builds (same hash) instead of rebuilding
    built: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    build_seconds: float = 0.0

    # -- engine calls --------------------------------------------------------------------
    def _run(self, args: list[str], timeout: float, log: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        out = open(log, "ab") if log else subprocess.PIPE  # noqa: SIM115
        try:
            return subprocess.run([*self.engine.cli_argv(), *args], stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False, env=self.engine.cli_env())
        finally:
            if log:
                out.close()  # type: ignore[union-attr]

    def exists(self, ref: str) -> bool:
        if self.engine.podman_cli:
            return self._run(["image", "exists", ref], 30).returncode == 0
        return self._run(["image", "inspect", ref], 30).returncode == 0

    def _podman_has(self, ref: str) -> bool:
        """A Docker engine next to a podman that already built ``ref`` (same recipe hash)."""
        if not self.copy_from_podman or self.engine.kind != "docker" or not shutil.which(PODMAN):
            return False
        return subprocess.run([PODMAN, "image", "exists", ref], capture_output=True, timeout=30).returncode == 0

    def _copy_from_podman(self, ref: str) -> None:
        """``podman save REF | docker load``: the local build of the same recipe, without a rebuild."""
        t0 = time.monotonic()
        log = _logfile(f"copy-{ref.rsplit('/', 1)[-1].replace(':', '-')}")
        with log.open("ab") as out:
            save = subprocess.Popen([PODMAN, "save", ref], stdout=subprocess.PIPE, stderr=out)
            try:
                load = subprocess.run([*self.engine.cli_argv(), "load", "-q"], stdin=save.stdout, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, env=self.engine.cli_env())
            finally:
                if save.stdout:
                    save.stdout.close()
                save.wait(timeout=60)
        if save.returncode != 0 or load.returncode != 0 or not self.exists(ref):
            raise ImageBuildError(f"copying {ref} from podman into the Docker engine at {self.engine.docker_host} "
                                  f"failed (podman save exit {save.returncode}, docker load exit {load.returncode}):\n"
                                  f"{_tail(log)}\nRe-run with --no-copy to build it with docker instead.")
        self.copied.append(ref)
        self.progress(f"copied {ref} from podman in {time.monotonic() - t0:.0f}s")

    def try_pull(self, ref: str) -> bool:
        with self._lock:
            if self._registry_ok is False:
                return False
        t0 = time.monotonic()
        proc = self._run(["pull", "-q", ref], PULL_TIMEOUT_S)
        ok = proc.returncode == 0
        if not ok:
            with self._lock:
                self._registry_ok = False
            self.progress(f"no registry: pulling {ref} failed in {time.monotonic() - t0:.1f}s; "
                          "building equivalents from Debian packages")
        return ok

    # -- resolution ------------------------------------------------------------------------
    def resolve(self, services: Iterable[str]) -> dict[str, str]:
        services = list(dict.fromkeys(services))
        unknown = [s for s in services if recipe_for(s) is None and s not in self.overrides]
        if unknown:
            raise ConfigError(f"no image recipe for service(s) {unknown}; "
                              f"known: {sorted(RECIPES) + sorted(EXTRA_RECIPES)}")
        refs: dict[str, str] = {}
        to_build: list[ImageRecipe] = []
        for svc in services:
            if svc in self.overrides:
                ref = self.overrides[svc]
                if not self.exists(ref) and not self.try_pull(ref):
                    raise ConfigError(f"image {ref} configured for {svc} is neither present nor pullable; "
                                      f"fix the override or drop it to use the built-in recipe")
                refs[svc] = ref
                continue
            recipe = RECIPES.get(svc) or EXTRA_RECIPES[svc]
            local = f"{LOCAL_PREFIX}/{svc}:{recipe_hash(recipe)}"
            if self.exists(local):
                refs[svc] = local
            elif self._podman_has(local):
                self._copy_from_podman(local)
                refs[svc] = local
            elif self.prefer_official and recipe.official and (
                    self.exists(recipe.official) or self.try_pull(recipe.official)):
                refs[svc] = recipe.official
            else:
                refs[svc] = local
                to_build.append(recipe)
        if to_build:
            self._build_all(to_build)
        return refs

    def official_only(self, ref: str) -> str | None:
        """``ref`` if present or pullable, else None (for services with a built-in fallback)."""
        if ref in self.overrides.values() or self.exists(ref) or self.try_pull(ref):
            return ref
        return None

    def _build_all(self, recipes: list[ImageRecipe]) -> None:
        t0 = time.monotonic()
        names = ", ".join(r.service for r in recipes)
        self.progress(f"cold start: building images {names} (about 2-5 minutes, two at a time; "
                      "cached by recipe hash, so later runs skip this)")
        base = self._ensure_base()
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(self._build, r, base) for r in recipes]
            errors = [f.exception() for f in futures if f.exception()]
        self.build_seconds += time.monotonic() - t0
        if errors:
            raise errors[0]  # type: ignore[misc]
        self.progress(f"images built in {time.monotonic() - t0:.0f}s")

    def _ensure_base(self) -> str:
        local = f"{LOCAL_PREFIX}/base:{base_hash()}"
        if self.exists(local):
            return local
        if self._podman_has(local):
            self._copy_from_podman(local)
            return local
        if self.exists(OFFICIAL_BASE) or self.try_pull(OFFICIAL_BASE):
            return OFFICIAL_BASE
        if not shutil.which("mmdebstrap"):
            raise ImageBuildError("no registry and no mmdebstrap to build a Debian base image; "
                                  "run `bash scripts/setup.sh` (it installs mmdebstrap)")
        with tempfile.TemporaryDirectory(prefix="renderchaos-build-") as tmp:
            tar = Path(tmp) / "rootfs.tar"
            log = _logfile("base")
            with self._ticker("base (mmdebstrap bookworm)", log):
                proc = subprocess.run(["bash", str(IMAGES_DIR / "base" / "recipe.sh"), str(tar)],
                                      stdout=log.open("wb"), stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
                if proc.returncode != 0:
                    raise ImageBuildError(f"building the base rootfs failed (exit {proc.returncode}):\n"
                                          f"{_tail(log)}\nIs deb.debian.org reachable? Re-run to retry.")
                proc2 = self._run(["import", str(tar), local], BUILD_TIMEOUT_S, log)
                if proc2.returncode != 0:
                    raise ImageBuildError(f"importing the base image failed:\n{_tail(log)}")
        return local

    def _build(self, recipe: ImageRecipe, base: str) -> None:
        tag = f"{LOCAL_PREFIX}/{recipe.service}:{recipe_hash(recipe)}"
        with tempfile.TemporaryDirectory(prefix="renderchaos-build-") as tmp:
            ctx = Path(tmp) / "ctx"
            shutil.copytree(recipe.context, ctx)
            log = _logfile(recipe.service)
            with self._ticker(recipe.service, log):
                if recipe.needs_wheelhouse:
                    self._wheelhouse(ctx, log)
                # -f: the recipes are Containerfiles, which `docker build` does not look for by itself
                proc = self._run(["build", "--network", "host", "--build-arg", f"BASE={base}",
                                  "--label", f"renderchaos.recipe={recipe_hash(recipe)}",
                                  "-f", str(ctx / "Containerfile"), "-t", tag, str(ctx)], BUILD_TIMEOUT_S, log)
                if proc.returncode != 0 or not self.exists(tag):  # inside the ticker: no "built" line
                    raise ImageBuildError(
                        f"building image {tag} with {self.engine.cli} failed (exit {proc.returncode}); "
                        f"last lines:\n{_tail(log)}\n"
                        f"Fix images/{recipe.service}/ and re-run; the cache is keyed by the recipe hash.",
                        service=recipe.service)
        self.built.append(recipe.service)

    def _wheelhouse(self, ctx: Path, log: Path) -> None:
        wheels = ctx / "wheelhouse"
        wheels.mkdir()
        shutil.copy(ctx / "requirements.txt", wheels / "requirements.txt")
        with log.open("ab") as out:
            proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                                   "-w", str(wheels), "-r", str(ctx / "requirements.txt")],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise ImageBuildError(f"building the wheelhouse for the {log.stem} image failed:\n{_tail(log)}\n"
                                  "Is PyPI reachable (pip config)? Re-run to retry.")

    class _Ticker:
        def __init__(self, resolver: "ImageResolver", what: str, log: Path) -> None:
            self.r, self.what, self.log = resolver, what, log
            self.stop = threading.Event()
            self.t0 = time.monotonic()

        def __enter__(self) -> None:
            self.r.progress(f"building {self.what} (log: {self.log})")
            threading.Thread(target=self._tick, daemon=True).start()

        def _tick(self) -> None:
            while not self.stop.wait(15):
                self.r.progress(f"  ... {self.what}: {time.monotonic() - self.t0:.0f}s")

        def __exit__(self, *exc: object) -> None:
            self.stop.set()
            if exc[0] is None:
                self.r.progress(f"built {self.what} in {time.monotonic() - self.t0:.0f}s")
            else:
                self.r.progress(f"FAILED {self.what} after {time.monotonic() - self.t0:.0f}s (log: {self.log})")

    def _ticker(self, what: str, log: Path) -> "ImageResolver._Ticker":
        return ImageResolver._Ticker(self, what, log)


def _logfile(what: str) -> Path:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{what}.log"
    log.write_bytes(b"")
    return log


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
