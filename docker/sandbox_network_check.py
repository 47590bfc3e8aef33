# A package install in a sandbox without network fails at once, saying why and what to do, instead
# of after a minute of pip's retries. Imported at start-up by a .pth file in the image's Python
# environment (root's; a .pth, as Debian's own sitecustomize comes first on the path); it only
# acts in a process started as `pip install|download` or `python -m pip install|download` that needs an
# index, and then costs one connection attempt of a few seconds at most.
import os
import sys

_NO_NETWORK = """pip: this sandbox cannot reach the package index {host} (its network is off or limited, or the
machine has none), so nothing can be downloaded. What you can do:
  - allow the network, if the operator lets you:   %sandbox network internet
    (or only the index: %sandbox network allow pypi.org files.pythonhosted.org)
  - have the packages in the image:                 jupyter sandbox image build --requirements FILE
  - upload a wheel and install it from the file:    %sandbox upload FILE.whl, then pip install ./FILE.whl
"""


def _pip_arguments():
    argv = list(getattr(sys, "orig_argv", sys.argv))
    for index, item in enumerate(argv):
        name = os.path.basename(item)
        if name in ("pip", "pip3") or name.startswith("pip3."):
            return argv[index + 1 :]
        if item == "-m" and index + 1 < len(argv) and argv[index + 1] == "pip":
            return argv[index + 2 :]
    return None


def _index_host(arguments):
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
    for index, item in enumerate(arguments):
        if item in ("-i", "--index-url") and index + 1 < len(arguments):
            url = arguments[index + 1]
        elif item.startswith("--index-url="):
            url = item.split("=", 1)[1]
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _reachable(host, port, timeout=3.0):
    import socket
    import threading

    result = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)  # name resolution has no timeout of its own
    return bool(result and result[0])


def _through_proxy(host, port):
    """Where pip's connection goes first: the proxy its environment names for the index (a sandbox
    whose network is a domain allow list reaches the outside only through the egress gateway, which
    then judges the index's name), else the index itself."""
    import urllib.request
    from urllib.parse import urlsplit

    scheme = "https" if port == 443 else "http"
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return host, port
    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    return parts.hostname, parts.port or 80


def _check():
    arguments = _pip_arguments()
    if not arguments or not any(a in ("install", "download", "wheel") for a in arguments[:3]):
        return
    if "--no-index" in arguments or os.environ.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes"):
        return
    named = (
        [a for a in arguments[arguments.index("install") + 1 :] if not a.startswith("-")]
        if ("install" in arguments)
        else []
    )
    if named and all(os.path.exists(a) for a in named) and "-r" not in arguments:
        return  # files and folders here: nothing to download
    host, port = _index_host(arguments)
    if host and host not in ("localhost", "127.0.0.1", "::1"):
        host, port = _through_proxy(host, port)
    if host and host not in ("localhost", "127.0.0.1", "::1") and not _reachable(host, port):
        sys.stderr.write(_NO_NETWORK.format(host=host))
        sys.stderr.flush()
        os._exit(1)


try:
    if os.environ.get("JUPYTER_SANDBOX_NETWORK_CHECK", "1") != "0":
        _check()
except Exception:  # never in the way of Python starting
    pass
