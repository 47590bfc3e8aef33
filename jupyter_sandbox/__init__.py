"""Run notebook code nobody has vetted inside hardened Docker containers."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_sandbox.server_extension"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-sandbox"}]
