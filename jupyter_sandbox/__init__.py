"""Run notebook code nobody has vetted inside hardened Docker containers."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    # Imported here: a kernel or the command line importing the package needs no Jupyter server.
    from .server_extension import SandboxExtension

    return [{"module": "jupyter_sandbox.server_extension", "app": SandboxExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-sandbox"}]
