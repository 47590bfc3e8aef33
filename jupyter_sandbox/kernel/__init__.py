"""The proxy kernel: Jupyter talks to it, it talks to the ipykernel inside the sandbox."""
