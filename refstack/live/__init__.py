"""Live recording (AVideo encoder-blacklist case): ingest with a local backup recording, a
relay to encoders behind an IP blocklist/allowlist, encoder monitoring and alerts, and the
final recording with a measured gap report.

``python -m refstack.live``          the platform (see :mod:`refstack.live.server`)
``python -m refstack.live.encoder``  one encoder, from its own source IP
"""
