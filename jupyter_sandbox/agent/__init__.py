"""The in-sandbox agent: a small HTTP server that runs inside the container as the sandbox user.

It is copied into each container before it starts (see `jupyter_sandbox.sandbox.manager`), so it
must only use the standard library and tornado (which every ipykernel installation has). It imports
its siblings relatively: inside the container the package is called `jupyter_sandbox_agent`.
"""
