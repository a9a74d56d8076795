"""Rendering estimates and plans for people (tables, Markdown) and machines (JSON)."""
