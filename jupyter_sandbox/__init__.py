"""Run notebook code nobody has vetted inside hardened Docker containers."""

__version__ = "0.1.0"
