"""The Docker-free test layer (a package, so that its conftest and modules never shadow tests/conftest.py)."""
