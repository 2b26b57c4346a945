"""The database probes' judgement, without a database: query cost from EXPLAIN JSON, and the
key-write watch's verdict on a sequence of keyspace events (no containers)."""

from __future__ import annotations

from types import SimpleNamespace

from renderchaos.probes.db import KeyWriteWatch, query_cost

# EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of "jobs of one user" with the jobs-by-user index gone:
# the planner walks the created_at index with a filter. No Seq Scan anywhere, yet 42 000 rows read.
WALK_WITH_FILTER = [{
    "Plan": {
        "Node Type": "Limit", "Actual Rows": 21, "Actual Loops": 1, "Shared Hit Blocks": 9200, "Shared Read Blocks": 40,
        "Plans": [{
            "Node Type": "Index Scan", "Index Name": "ix_jobs_created_at", "Relation Name": "jobs",
            "Actual Rows": 21, "Actual Loops": 1, "Rows Removed by Filter": 41979,
            "Shared Hit Blocks": 9200, "Shared Read Blocks": 40,
        }],
    },
    "Planning Time": 0.2, "Execution Time": 61.5,
}]

# the same query served by the (user_id, created_at) index
BY_USER_INDEX = [{
    "Plan": {
        "Node Type": "Limit", "Actual Rows": 21, "Actual Loops": 1, "Shared Hit Blocks": 25,
        "Plans": [{
            "Node Type": "Index Scan", "Index Name": "ix_jobs_user_created", "Relation Name": "jobs",
            "Actual Rows": 21, "Actual Loops": 1, "Rows Removed by Filter": 2, "Shared Hit Blocks": 25,
        }],
    },
    "Execution Time": 0.09,
}]

# a nested loop: the inner scan runs once per outer row (loops count)
NESTED = [{
    "Plan": {
        "Node Type": "Nested Loop", "Actual Rows": 10, "Actual Loops": 1, "Shared Hit Blocks": 40,
        "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "users", "Actual Rows": 10, "Actual Loops": 1},
            {"Node Type": "Bitmap Heap Scan", "Relation Name": "jobs", "Actual Rows": 1, "Actual Loops": 10,
             "Rows Removed by Index Recheck": 3,
             "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "ix", "Actual Rows": 4, "Actual Loops": 10}]},
        ],
    },
    "Execution Time": 1.0,
}]


def test_a_filtered_walk_of_the_wrong_index_is_expensive_without_a_seq_scan() -> None:
    cost = query_cost(WALK_WITH_FILTER, "jobs by user")
    assert not any(n.startswith("Seq Scan") for n in cost.nodes)
    assert cost.rows_read == 42_000
    assert cost.buffers == 9_240
    assert cost.ms == 61.5
    assert cost.rows_returned == 21
    assert "ix_jobs_created_at" in cost.text


def test_the_right_index_reads_little() -> None:
    cost = query_cost(BY_USER_INDEX)
    assert cost.rows_read == 23
    assert cost.buffers == 25


def test_rows_read_count_every_loop_and_recheck() -> None:
    cost = query_cost(NESTED)
    # users: 10 rows once; jobs: (1 + 3 rechecked away) x 10 loops; index nodes read no table rows
    assert cost.rows_read == 10 + 40
    assert cost.nodes[0] == "Nested Loop" and cost.nodes[-1] == "Bitmap Index Scan using ix"


def test_query_cost_reads_the_json_text_too() -> None:
    import json

    assert query_cost(json.dumps(BY_USER_INDEX)).rows_read == 23


# ---------------------------------------------------------------------------------------
def _watch(grace: float = 1.0) -> KeyWriteWatch:
    client = SimpleNamespace(connection_pool=SimpleNamespace(connection_kwargs={"db": 0}))
    return KeyWriteWatch(client, exclude=("renderchaos:filler:",), grace=grace)


def test_a_key_written_with_its_ttl_passes() -> None:
    w = _watch()
    w.observe("refstack:rl:key:abc", "set", pttl=1500, now=0.0)
    w.observe("refstack:rl:key:abc", "set", pttl=900, now=0.1)
    rep = w.stop()
    assert rep.writes == 2 and rep.keys == {"refstack:rl:key:abc"} and rep.checked == {"refstack:rl:key:abc"}
    assert not rep.without_ttl


def test_a_key_written_without_ttl_fails_even_if_it_is_evicted_later() -> None:
    w = _watch()
    w.observe("refstack:worker:w0:12", "set", pttl=-1, now=0.0)
    w.observe("refstack:worker:w0:12", "evicted", pttl=-2, now=0.5)  # the evidence is gone; the verdict is not
    rep = w.stop()
    assert list(rep.without_ttl) == ["refstack:worker:w0:12"]
    assert "'set'" in rep.without_ttl["refstack:worker:w0:12"]


def test_a_ttl_set_by_a_second_command_within_the_grace_passes() -> None:
    w = _watch(grace=1.0)
    w.observe("refstack:leak:observations", "lpush", pttl=-1, now=0.0)
    w.observe("refstack:leak:observations", "expire", pttl=None, now=0.2)
    assert not w.stop().without_ttl


def test_a_ttl_that_comes_after_the_grace_is_too_late() -> None:
    w = _watch(grace=1.0)
    w.observe("k", "hset", pttl=-1, now=0.0)
    w.observe("other", "set", pttl=100, now=2.0)  # any later event judges what is past its grace
    w.observe("k", "expire", pttl=None, now=2.1)
    assert list(w.stop().without_ttl) == ["k"]


def test_persist_is_a_violation_and_the_harness_keys_are_not_judged() -> None:
    w = _watch()
    w.observe("renderchaos:filler:ab:1:2", "set", pttl=-1, now=0.0)
    w.observe("refstack:rl:ip:127.0.0.1", "persist", pttl=None, now=0.1)
    rep = w.stop()
    assert rep.ignored == 1
    assert list(rep.without_ttl) == ["refstack:rl:ip:127.0.0.1"]


def test_a_key_gone_before_its_ttl_was_read_is_seen_but_not_checked() -> None:
    w = _watch()
    w.observe("k", "set", pttl=-2, now=0.0)
    rep = w.stop()
    assert rep.keys == {"k"} and not rep.checked and not rep.without_ttl
