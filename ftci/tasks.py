"""The task types ftci knows; the type picks default data checks, metrics and gates.

Kept free of pydantic so the CLI can list them without loading the config model.
"""

from __future__ import annotations

TASK_TYPES = ("classification", "extraction", "formatting", "style", "chat")
