"""Builders shared by test directories (tiny real models, data files)."""
