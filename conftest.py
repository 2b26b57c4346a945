"""Repository-level wiring only. The harness itself is the installed plugin (renderchaos.plugin)."""

collect_ignore_glob = ["reports/*", "media_fixtures/.cache/*", "benchmarks/*"]
