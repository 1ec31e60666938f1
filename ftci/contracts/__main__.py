"""`python -m ftci.contracts`: regenerate ftci/contracts/schemas/*.schema.json from the models."""

from __future__ import annotations

from ftci.contracts import write_schemas

if __name__ == "__main__":
    for path in write_schemas():
        print(f"wrote {path}")
