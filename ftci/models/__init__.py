"""Base models ftci can train from: the offline starter models and how they are resolved."""
