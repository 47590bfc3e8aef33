"""Run a notebook headless through the sandbox kernel and print what each cell produced."""

from __future__ import annotations

import sys
import time

import nbformat
from nbclient import NotebookClient


def describe(output: dict) -> str:
    kind = output["output_type"]
    if kind == "stream":
        return output["text"].rstrip("\n")
    if kind == "error":
        return f"{output['ename']}: {output['evalue']}"
    data = output.get("data", {})
    if "text/plain" in data and "image/png" not in data:
        return str(data["text/plain"])
    return f"<{', '.join(sorted(data))}>"


def main(path: str) -> int:
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(notebook, kernel_name="sandbox-python", timeout=600, allow_errors=True)
    client.execute()
    failed = False
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        print(f"--- [{index}] {cell.source.splitlines()[0]}")
        for output in cell.outputs:
            print("   ", describe(output).replace("\n", "\n    "))
            failed |= output["output_type"] == "error"
    print(f"--- ran {path} in {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "examples/demo.ipynb"))
