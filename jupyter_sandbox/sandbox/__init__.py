"""The sandbox core: specs, the manager, Docker calls, the image and the agent client.

Nothing in this package imports the Jupyter server, so the kernel, the server extension and the
command line all share it.
"""
