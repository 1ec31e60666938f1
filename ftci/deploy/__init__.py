"""`ftci deploy`: a released version onto its serving host, blue/green, checked before it
takes traffic.

    spec.py       what a release is served with (ServeSpec) and the engines' command lines
    launchers/    process (a child server on this host), docker, kubernetes
    health.py     readiness polling, the server's identity, in-flight requests
    smoke.py      the smoke eval: the live endpoint vs the release's recorded per-item results
    router.py     nginx in front: one stable URL, graceful reloads
    ledger.py     what serves where (SQLite, kill-safe), beside the registry
    rollout.py    the steps: start green, health, identity, smoke, switch, drain blue
"""
