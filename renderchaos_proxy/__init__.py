"""renderchaos_proxy: a Toxiproxy 2.12-compatible fault proxy (stdlib only) and a typed client.

    server   the HTTP API and the ``renderchaos-proxy`` entry point (toxics documented there)
    proxy    proxies, listeners, toxics per proxy, byte counters
    link     one proxied connection: splice fast path, toxic path
    toxics   toxic types, attribute defaults, validation
    client   ToxiproxyClient / Proxy / Toxic for ours or the real Toxiproxy
    errors   the API's error messages; the client's ToxiproxyError tree (imports nothing from renderchaos)
"""

VERSION = "2.12.0"
