"""The training stage: run key and cache, guardrails, the recipe and its orchestration."""
