"""Embedded Hugging Face-style configs, one `<preset name>.json` per model (package data)."""
