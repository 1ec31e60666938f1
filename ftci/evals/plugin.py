"""pytest plugin for ftci eval suites (placeholder until the fixtures land)."""
