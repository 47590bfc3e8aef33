"""SSH into a sandbox: expiring tokens, host keys and the gateway the Jupyter server runs."""
