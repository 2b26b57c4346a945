"""A team's own runbook, registered without forking: register_runbook() from a conftest.py, and
the ``renderchaos.runbooks`` entry point group of an installed distribution.

The entry point tests install nothing: a ``*.dist-info`` directory in a temp dir on ``sys.path`` is
what an installed wheel looks like to ``importlib.metadata``.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from renderchaos.errors import ConfigError
from renderchaos.runbooks import RunbookRegistry, bundled_runbooks, discover, register_runbook

pytest_plugins = ["pytester"]

OPS_MD = """\
---
key: OPS
language: en
---
# Ops runbook

## 1. Queues
### 1. Pending jobs
### 2. Stuck workers
## Storage
"""

DB_TOML = """\
key = "DB"
title = "Database runbook"
file = "db.en.txt"
[[sections]]
id = "§1"
title = "Connections"
[[sections]]
id = "§1.1"
title = "Pool exhausted"
level = 2
"""


def fake_distribution(site: Path, module: str, entry_points: str, body: str) -> None:
    """What pip leaves behind for a wheel with ``module.py`` and these entry points."""
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[renderchaos.runbooks]\n{entry_points}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(body))


def test_register_runbook_from_a_temp_dir_into_a_registry(tmp_path: Path) -> None:
    (tmp_path / "ops.md").write_text(OPS_MD)
    (tmp_path / "db.toml").write_text(DB_TOML)
    reg = RunbookRegistry(bundled_runbooks())
    ops = register_runbook(tmp_path / "ops.md", registry=reg)
    register_runbook(str(tmp_path / "db.toml"), key="DB", registry=reg)
    assert reg.keys() == ("R", "A", "P", "V", "OPS", "DB")
    assert reg.resolve("OPS", "§1.2 stuck workers (SIGSTOP)")[1].title == "Stuck workers"
    assert reg.resolve("DB", "§1.1 pool exhausted under load")[1].title == "Pool exhausted"
    assert register_runbook(ops, registry=reg) is ops  # conftest imported twice: harmless
    with pytest.raises(ConfigError, match="registered as 'R'"):
        register_runbook(tmp_path / "db.toml", key="R", registry=reg)
    (tmp_path / "r.toml").write_text(DB_TOML.replace('key = "DB"', 'key = "R"'))
    with pytest.raises(ConfigError, match=r"key 'R' is registered twice.*render-platform-troubleshooting.zh.txt "
                                          r"\(from renderchaos/runbooks/render-platform.toml\) and db.en.txt"):
        register_runbook(tmp_path / "r.toml", registry=reg)
    with pytest.raises(ConfigError, match="expected a RunbookDoc or the path"):
        register_runbook(42, registry=reg)  # type: ignore[arg-type]


def test_discover_loads_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "db.toml").write_text(DB_TOML)
    (tmp_path / "ops.md").write_text(OPS_MD.replace("key: OPS\n", ""))
    fake_distribution(site, "rc_ep_ok", "DB = rc_ep_ok:db_runbook\nOPS = rc_ep_ok:OPS_PATH", f"""
        from renderchaos.runbooks import load_runbook
        def db_runbook():
            return load_runbook({str(tmp_path / 'db.toml')!r})
        OPS_PATH = {str(tmp_path / 'ops.md')!r}   # not callable: the object itself is the path
        """)
    monkeypatch.syspath_prepend(str(site))
    reg = RunbookRegistry()
    found = discover(reg)
    assert [d.key for d in found] == ["DB", "OPS"]  # OPS: a Markdown runbook keyed by its entry point
    assert reg.resolve("OPS", "§1.1 pending")[1].title == "Pending jobs"
    assert discover(reg) == found  # idempotent


@pytest.mark.parametrize("entry, body, message", [
    ("BAD = rc_ep_bad0:missing", "", "entry point BAD = rc_ep_bad0:missing (distribution rc_ep_bad0, "
                                     "group renderchaos.runbooks) failed: AttributeError"),
    ("BAD = rc_ep_bad1:f", "def f():\n    raise RuntimeError('index server down')\n",
     "failed: RuntimeError: index server down; expected it to return a RunbookDoc"),
    ("BAD = rc_ep_bad2:f", "def f():\n    return 42\n", "got int 42; expected a RunbookDoc or the path"),
    ("BAD = rc_ep_bad3:f", "from renderchaos.runbooks import bundled_runbooks\n"
                           "def f():\n    return bundled_runbooks()[0]\n", "it says key 'R' but was registered as 'BAD'"),
])
def test_a_broken_entry_point_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, body: str,
                                       message: str) -> None:
    module = entry.split("= ")[1].split(":")[0]
    fake_distribution(tmp_path, module, entry, body)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        discover(RunbookRegistry())
    assert message in str(info.value)
    assert info.value.entry_point == "BAD"


def test_a_team_conftest_and_package_register_runbooks(pytester: pytest.Pytester, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Black box, in a fresh process: the default registry a test sees holds the bundled four,
    the runbook a conftest.py registered, and the one an installed package's entry point gives."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "db.toml").write_text(DB_TOML)
    fake_distribution(site, "rc_ep_team", "DB = rc_ep_team:runbook", """
        from pathlib import Path
        def runbook():
            return Path(__file__).with_name("db.toml")
        """)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    pytester.makefile(".md", ops=OPS_MD.replace("key: OPS\n", ""))
    pytester.makeconftest("""
        from pathlib import Path
        from renderchaos.runbooks import register_runbook
        register_runbook(Path(__file__).with_name("ops.md"), key="OPS")
        """)
    pytester.makepyfile("""
        from renderchaos.runbooks import default_registry
        def test_resolves():
            reg = default_registry()
            assert reg.keys() == ("R", "A", "P", "V", "DB", "OPS")
            assert reg.resolve("OPS", "§1.2 Stuck workers (SIGSTOP)")[1].title == "Stuck workers"
            assert reg.resolve("DB", "§1.1 pool")[1].title == "Pool exhausted"
            assert reg.resolve("R", "§一.3 渲染超时")[1].title == "渲染超时"
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
