"""Image resolution against a fake engine CLI: which images are used, built, or refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from renderchaos.provisioning.engine import images as im
from renderchaos.provisioning.engine.engine import Engine
from renderchaos.errors import ConfigError, ImageBuildError

FAKE = """#!/bin/sh
# A fake container CLI: logs its arguments; images listed in $FAKE_HAVE exist; pulls succeed
# only when FAKE_REGISTRY=1; builds succeed unless FAKE_BUILD_FAIL=1.
echo "$*" >> "$FAKE_LOG"
[ "$1" = --host ] && shift 2  # a Docker CLI pointed at an engine
case "$1 $2" in
  "image exists") grep -qxF "$3" "$FAKE_HAVE"; exit $? ;;
  "image inspect") grep -qxF "$3" "$FAKE_HAVE"; exit $? ;;
esac
case "$1" in
  pull) [ "$FAKE_REGISTRY" = 1 ] && { echo "$3" >> "$FAKE_HAVE"; exit 0; }; echo "no registry" >&2; exit 125 ;;
  build) [ "$FAKE_BUILD_FAIL" = 1 ] && { echo "E: broken recipe"; exit 1; }
         while [ $# -gt 0 ]; do [ "$1" = -t ] && echo "$2" >> "$FAKE_HAVE"; shift; done; exit 0 ;;
  import) echo "$3" >> "$FAKE_HAVE"; exit 0 ;;
  save) echo "IMAGE $2" ;;
  load) read -r kind ref; [ "$kind" = IMAGE ] && echo "$ref" >> "$FAKE_HAVE"; exit 0 ;;
esac
exit 0
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, Path, Path]:
    cli = tmp_path / "fakecli"
    cli.write_text(FAKE)
    cli.chmod(cli.stat().st_mode | stat.S_IEXEC)
    log, have = tmp_path / "log", tmp_path / "have"
    log.touch()
    have.touch()
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_HAVE", str(have))
    monkeypatch.setattr(im.ImageResolver, "_wheelhouse", lambda self, ctx, log: None)
    return Engine(kind="podman", docker_host="unix:///nonexistent", cli=str(cli)), log, have


def _quiet(line: str) -> None:
    pass


def test_recipe_hash_is_stable_and_covers_the_base() -> None:
    r = im.RECIPES["redis"]
    assert im.recipe_hash(r) == im.recipe_hash(r)
    assert len({im.recipe_hash(x) for x in im.RECIPES.values()}) == len(im.RECIPES)


def test_warm_machine_builds_nothing(fake: tuple[Engine, Path, Path]) -> None:
    engine, log, have = fake
    tags = [f"{im.LOCAL_PREFIX}/{s}:{im.recipe_hash(r)}" for s, r in im.RECIPES.items()]
    have.write_text("\n".join(tags) + "\n")
    refs = im.ImageResolver(engine, progress=_quiet).resolve(list(im.RECIPES))
    assert sorted(refs.values()) == sorted(tags)
    assert "build" not in log.read_text() and "pull" not in log.read_text()


def test_no_registry_builds_locally_with_progress(fake: tuple[Engine, Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    engine, log, have = fake
    have.write_text(f"{im.LOCAL_PREFIX}/base:{im.base_hash()}\n")
    lines: list[str] = []
    resolver = im.ImageResolver(engine, progress=lines.append)
    refs = resolver.resolve(["redis", "app"])
    assert refs["redis"] == f"{im.LOCAL_PREFIX}/redis:{im.recipe_hash(im.RECIPES['redis'])}"
    assert sorted(resolver.built) == ["app", "redis"]
    assert log.read_text().count("pull") == 1, "one failed pull is enough to know the registry is unreachable"
    assert any("building images" in line for line in lines) and any("built redis" in line for line in lines)
    builds = [line for line in log.read_text().splitlines() if line.startswith("build ")]
    # -f: Docker's `build` reads only a file named Dockerfile unless told; the recipes are Containerfiles
    assert all(f"-f {im.IMAGES_DIR}" not in b and "/ctx/Containerfile -t " in b for b in builds), builds


def test_registry_available_uses_official_images(fake: tuple[Engine, Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    engine, log, have = fake
    monkeypatch.setenv("FAKE_REGISTRY", "1")
    refs = im.ImageResolver(engine, progress=_quiet).resolve(["postgres", "redis"])
    assert refs == {"postgres": im.RECIPES["postgres"].official, "redis": im.RECIPES["redis"].official}
    assert "build" not in log.read_text()


def test_override_must_exist_or_be_pullable(fake: tuple[Engine, Path, Path]) -> None:
    engine, _, _ = fake
    with pytest.raises(ConfigError, match="neither present nor pullable"):
        im.ImageResolver(engine, progress=_quiet, overrides={"postgres": "my/pg:15"}).resolve(["postgres"])


def test_unknown_service_is_a_config_error(fake: tuple[Engine, Path, Path]) -> None:
    engine, _, _ = fake
    with pytest.raises(ConfigError, match="no image recipe for service"):
        im.ImageResolver(engine, progress=_quiet).resolve(["mysql"])


def test_failed_build_names_the_recipe_and_shows_the_log(fake: tuple[Engine, Path, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _, have = fake
    have.write_text(f"{im.LOCAL_PREFIX}/base:{im.base_hash()}\n")
    monkeypatch.setenv("FAKE_BUILD_FAIL", "1")
    lines: list[str] = []
    with pytest.raises(ImageBuildError, match=r"(?s)building image .*redis.* failed.*E: broken recipe.*images/redis/"):
        im.ImageResolver(engine, progress=lines.append).resolve(["redis"])
    assert not any("built redis" in line for line in lines), f"a failed build must not say 'built': {lines}"
    assert any("FAILED redis" in line for line in lines), lines


def _fake_docker(fake: tuple[Engine, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The same fake CLI as a Docker engine at tcp://127.0.0.1:1, and as the podman next to it
    (its own image list)."""
    engine, log, have = fake
    podman = tmp_path / "podman"
    podman.write_text(f'#!/bin/sh\nFAKE_HAVE="$PODMAN_HAVE" exec {engine.cli} "$@"\n')
    podman.chmod(0o755)
    monkeypatch.setattr(im, "PODMAN", str(podman))
    monkeypatch.setenv("PODMAN_HAVE", str(tmp_path / "podman_have"))
    return Engine(kind="docker", docker_host="tcp://127.0.0.1:1", cli=engine.cli)


def test_docker_engine_takes_podmans_local_build_of_the_same_recipe(
        fake: tuple[Engine, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, log, have = fake
    docker = _fake_docker(fake, tmp_path, monkeypatch)
    tag = f"{im.LOCAL_PREFIX}/redis:{im.recipe_hash(im.RECIPES['redis'])}"
    (tmp_path / "podman_have").write_text(tag + "\n")
    lines: list[str] = []
    resolver = im.ImageResolver(docker, progress=lines.append)
    assert resolver.resolve(["redis"]) == {"redis": tag}
    assert resolver.copied == [tag] and not resolver.built
    calls = log.read_text()
    assert "--host tcp://127.0.0.1:1 load -q" in calls and f"save {tag}" in calls
    assert "pull" not in calls and "build" not in calls
    assert tag in have.read_text().split()
    assert any(f"copied {tag} from podman" in line for line in lines)


def test_docker_engine_builds_when_podman_has_nothing(
        fake: tuple[Engine, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, log, have = fake
    docker = _fake_docker(fake, tmp_path, monkeypatch)
    (tmp_path / "podman_have").write_text("")
    have.write_text(f"{im.LOCAL_PREFIX}/base:{im.base_hash()}\n")
    resolver = im.ImageResolver(docker, progress=_quiet)
    resolver.resolve(["redis"])
    assert resolver.built == ["redis"] and not resolver.copied
    build = next(line for line in log.read_text().splitlines() if " build " in f" {line} ")
    assert build.startswith("--host tcp://127.0.0.1:1 build ") and "/ctx/Containerfile -t " in build


def test_extra_images_are_built_only_by_name(fake: tuple[Engine, Path, Path]) -> None:
    engine, log, have = fake
    have.write_text(f"{im.LOCAL_PREFIX}/base:{im.base_hash()}\n")
    assert "unmanic" not in im.RECIPES, "a third-party platform image must stay out of the default build"
    resolver = im.ImageResolver(engine, progress=_quiet)
    refs = resolver.resolve(["unmanic"])
    assert refs == {"unmanic": f"{im.LOCAL_PREFIX}/unmanic:{im.recipe_hash(im.EXTRA_RECIPES['unmanic'])}"}
    assert resolver.built == ["unmanic"]
    assert "pull" not in log.read_text(), "no official image exists for unmanic; nothing to pull"
