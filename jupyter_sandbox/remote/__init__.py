"""Hub mode, the user's side: a Jupyter server and its kernels that reach sandboxes through the sandbox
service (`jupyter sandbox service`) instead of a container engine.

Single-machine mode (the engine on this machine) stays the default; hub mode is on when a service URL
is configured (settings.py).
"""
