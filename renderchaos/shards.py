"""Shards: split a selection across CI jobs, then merge their reports into one.

Split with pytest-split, balanced by the recorded scenario durations in ``.test_durations``
(repo root, committed), each shard with its own stack and reports directory::

    pytest suites --chaos-profile resilience -n 2 --splits 2 --group 1 --splitting-algorithm least_duration --chaos-reports reports/shard-1
    pytest suites --chaos-profile resilience -n 2 --splits 2 --group 2 --splitting-algorithm least_duration --chaos-reports reports/shard-2

Merge (one results.json, one junit.xml, one report.html)::

    python -m renderchaos.shards merge reports/shard-* --out reports/merged

Refresh the durations file from the results of a run (sharded or not)::

    python -m renderchaos.shards durations reports/merged/results.json

The merge is generic: entries are concatenated (a scenario in two shards is an error), numeric
summary counts are added, header fields equal in every shard are kept, differing ones become
per-shard lists (``elapsed_s`` is the longest shard: the wall time of parallel jobs), and a
``shards`` list records each shard's run id, seed, wall time and summary. The page is rendered
by the report module's own renderer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderchaos.errors import ConfigError, RenderChaosError

DURATIONS_FILE = Path(__file__).resolve().parents[1] / ".test_durations"
RESULTS, JUNIT, HTML = "results.json", "junit.xml", "report.html"
OUTCOME_KEYS = ("passed", "failed", "error", "skipped", "interrupted", "xfailed", "xpassed")


class ShardError(ConfigError):
    """Shard reports that cannot be merged (missing, overlapping, unreadable)."""


@dataclass
class Shard:
    directory: Path
    results: dict[str, Any] | None  # None: the shard selected nothing with a scenario
    junit: ET.Element | None


def load_shard(directory: Path) -> Shard:
    if not directory.is_dir():
        raise ShardError(f"shard {directory} is not a directory; pass the shards' --chaos-reports directories "
                         "(e.g. reports/shard-*)")
    results = None
    if (directory / RESULTS).exists():
        try:
            results = json.loads((directory / RESULTS).read_text())
        except ValueError as exc:
            raise ShardError(f"{directory / RESULTS} is not JSON ({exc}); was the shard's job cut off?") from exc
    junit = None
    if (directory / JUNIT).exists():
        try:
            junit = ET.parse(directory / JUNIT).getroot()
        except ET.ParseError as exc:
            raise ShardError(f"{directory / JUNIT} is not valid XML ({exc}); was the shard's job cut off?") from exc
    if results is None and junit is None:
        raise ShardError(f"shard {directory} has neither {RESULTS} nor {JUNIT}: its run did not finish. "
                         "Re-run that shard (same --splits/--group) before merging.")
    if results is None and junit is not None and _junit_counts(junit)["tests"] > 0:
        raise ShardError(f"shard {directory} ran {_junit_counts(junit)['tests']} tests (junit.xml) but wrote no "
                         f"{RESULTS}; was it run without the renderchaos plugin's --chaos-profile?")
    return Shard(directory, results, junit)


# ---------------------------------------------------------------------------------------
# results.json

def _add(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) or bool(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _add(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in {**a, **b}}
    return a if a == b else [a, b]


def merge_results(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge the results.json documents of several shards (``(name, doc)`` pairs)."""
    if not docs:
        raise ShardError("no shard results to merge")
    seen: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    for name, doc in docs:
        for entry in doc.get("results", []):
            key = entry.get("nodeid") or entry.get("id")
            if key in seen:
                raise ShardError(f"{key} is in shard {seen[key]} and in shard {name}: the shards overlap. "
                                 "Give every shard the same --splits and a different --group (and the same "
                                 "durations file and selection).")
            seen[key] = name
            results.append(entry)
    results.sort(key=lambda e: e.get("id", e.get("nodeid", "")))
    summary: dict[str, Any] = {}
    for _, doc in docs:
        summary = _add(summary, doc.get("summary", {})) if summary else dict(doc.get("summary", {}))
    counted: dict[str, int] = {}
    for entry in results:
        counted[entry.get("outcome", "?")] = counted.get(entry.get("outcome", "?"), 0) + 1
    for key in OUTCOME_KEYS:
        if summary.get(key, 0) != counted.get(key, 0):
            raise ShardError(f"merged summary says {key}={summary.get(key, 0)} but the entries hold "
                             f"{counted.get(key, 0)}; a shard's results.json is inconsistent")
    merged: dict[str, Any] = {}
    header_keys = [k for _, d in docs for k in d if k not in ("results", "summary", "generated_at")]
    for key in dict.fromkeys(header_keys):
        values = [d.get(key) for _, d in docs]
        if key == "elapsed_s" and all(isinstance(v, (int, float)) for v in values):
            merged[key] = max(values)  # shards run in parallel: the longest one is the wall time
        elif all(v == values[0] for v in values):
            merged[key] = values[0]
        elif all(isinstance(v, bool) for v in values):
            merged[key] = any(values)
        else:
            merged[key] = values
    merged["shards"] = [{"name": name, "run_id": d.get("run_id"), "seed": d.get("seed"),
                         "elapsed_s": d.get("elapsed_s"), "summary": d.get("summary", {})} for name, d in docs]
    return {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **merged,
            "summary": summary, "results": results}


# ---------------------------------------------------------------------------------------
# JUnit XML

def _suites(root: ET.Element) -> list[ET.Element]:
    return [root] if root.tag == "testsuite" else list(root.iter("testsuite"))


def _junit_counts(root: ET.Element) -> dict[str, float]:
    out = {"tests": 0.0, "failures": 0.0, "errors": 0.0, "skipped": 0.0, "time": 0.0}
    for suite in _suites(root):
        for key in out:
            out[key] += float(suite.get(key, 0) or 0)
    return out


def merge_junit(junits: list[tuple[str, ET.Element]]) -> ET.Element:
    """One ``<testsuites>`` with one ``<testsuite>`` holding every shard's test cases."""
    root = ET.Element("testsuites", name="pytest tests")
    suite = ET.SubElement(root, "testsuite", name="pytest")
    props = ET.SubElement(suite, "properties")
    seen: dict[tuple[str, str], str] = {}
    totals = {"tests": 0.0, "failures": 0.0, "errors": 0.0, "skipped": 0.0, "time": 0.0}
    stamps, hosts = [], []
    for name, junit in junits:
        ET.SubElement(props, "property", name="shard", value=name)
        for s in _suites(junit):
            if s.get("timestamp"):
                stamps.append(s.get("timestamp"))
            if s.get("hostname"):
                hosts.append(s.get("hostname"))
            for case in s.findall("testcase"):
                key = (case.get("classname", ""), case.get("name", ""))
                if key in seen:
                    raise ShardError(f"test case {key[0]}::{key[1]} is in shard {seen[key]} and in shard {name}: "
                                     "the shards overlap")
                seen[key] = name
                suite.append(case)
        for key, value in _junit_counts(junit).items():
            totals[key] += value
    for key, value in totals.items():
        suite.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
    if stamps:
        suite.set("timestamp", min(stamps))
    if hosts:
        suite.set("hostname", ",".join(dict.fromkeys(hosts)))
    return root


# ---------------------------------------------------------------------------------------

def merge(directories: list[Path], out: Path) -> dict[str, Any]:
    """Merge shard report directories into ``out`` (results.json, junit.xml, report.html)."""
    from renderchaos.report.results import render_html

    if not directories:
        raise ShardError("no shard directories given (e.g. reports/shard-*)")
    shards = [load_shard(d) for d in directories]
    docs = [(s.directory.name, s.results) for s in shards if s.results is not None]
    doc = merge_results(docs)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    junits = [(s.directory.name, s.junit) for s in shards if s.junit is not None]
    if junits:
        tree = ET.ElementTree(merge_junit(junits))  # type: ignore[arg-type]
        ET.indent(tree)
        tree.write(out / JUNIT, encoding="utf-8", xml_declaration=True)
    (out / HTML).write_text(render_html(doc))
    return doc


def durations_from_results(paths: list[Path]) -> dict[str, float]:
    """``nodeid -> seconds`` (setup + call + teardown, as pytest-split records) from results.json files."""
    out: dict[str, float] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ShardError(f"cannot read {path}: {exc}") from exc
        for entry in doc.get("results", []):
            if entry.get("nodeid") and isinstance(entry.get("duration_s"), (int, float)):
                out[entry["nodeid"]] = float(entry["duration_s"])
    if not out:
        raise ShardError(f"no scenario durations in {[str(p) for p in paths]}")
    return out


def write_durations(new: dict[str, float], path: Path, clean: bool = False) -> dict[str, float]:
    """Update the pytest-split durations file (keeps other tests' entries unless ``clean``)."""
    old: dict[str, float] = {}
    if path.exists() and not clean:
        old = json.loads(path.read_text())
    merged = {**old, **{k: round(v, 3) for k, v in new.items()}}
    path.write_text(json.dumps(merged, indent=4, sort_keys=True) + "\n")
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderchaos.shards", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="merge shard report directories into one report")
    m.add_argument("shards", nargs="+", type=Path, help="the shards' --chaos-reports directories")
    m.add_argument("--out", type=Path, default=Path("reports"), help="where the merged report goes (default reports/)")
    m.add_argument("--strict", action="store_true", help="exit 1 when a scenario failed, errored or was interrupted")
    d = sub.add_parser("durations", help="refresh the pytest-split durations file from results.json files")
    d.add_argument("results", nargs="+", type=Path)
    d.add_argument("--out", type=Path, default=DURATIONS_FILE, help=f"default {DURATIONS_FILE.name} at the repo root")
    d.add_argument("--clean", action="store_true", help="drop entries of tests not in these results")
    args = parser.parse_args(argv)
    try:
        if args.command == "merge":
            doc = merge(args.shards, args.out)
            counts = ", ".join(f"{n} {k}" for k, n in sorted(doc["summary"].items()) if isinstance(n, int))
            print(f"merged {len(args.shards)} shards: {counts}; {args.out / RESULTS}, {args.out / JUNIT}, "
                  f"{args.out / HTML}")
            bad = sum(doc["summary"].get(k, 0) for k in ("failed", "error", "interrupted"))
            return 1 if args.strict and bad else 0
        new = durations_from_results(args.results)
        merged = write_durations(new, args.out, args.clean)
        print(f"{args.out}: {len(new)} durations refreshed ({len(merged)} in the file, "
              f"{sum(new.values()):.0f}s recorded)")
        return 0
    except RenderChaosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
