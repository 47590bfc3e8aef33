"""jupyter_kernel_test's suite (the client-side conformance tests of Jupyter kernels) on the sandbox
kernel: once on a cold start (the first test meets a sandbox still coming up), once warm (the same
kernel restarted, its sandbox running), and the iopub_welcome greeting of ipykernel 7."""

from __future__ import annotations

import unittest

import jupyter_kernel_test
import pytest
from jupyter_client.manager import start_new_kernel

KERNEL = "sandbox-python"


@pytest.fixture(scope="module", autouse=True)
def _image(sandbox_image: str) -> None:
    """The suites below are unittest classes; the image is built before they start kernels."""


class SandboxKernelBehaviour:
    """What the suite needs to know about a Python kernel (the samples ipykernel passes with)."""

    kernel_name = KERNEL
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\frac{1}{2}'))", "mime": "text/latex"},
    ]
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    def test_history(self) -> None:
        """The suite's history test, with its range step as ipykernel answers it: IPython numbers
        the current session 0 in a range reply (the suite expects the tail's absolute number, which
        a local ipykernel does not give either)."""
        codes = [sample["code"] for sample in self.code_execute_result]
        reply = self.history_helper(codes, output=False, raw=True, hist_access_type="tail", n=len(codes))
        history = reply["content"]["history"]
        self.assertEqual(codes, [entry[2] for entry in history])
        _, start = history[0][0:2]
        reply = self.history_helper(codes, output=True, raw=True, hist_access_type="tail", n=len(codes))
        self.assertEqual(len(reply["content"]["history"][0][2]), 2)
        reply = self.history_helper(
            codes, output=False, raw=True, hist_access_type="range", session=0, start=start, stop=start + 1
        )
        self.assertEqual([entry[1:] for entry in reply["content"]["history"]], [[start, codes[0]]])
        reply = self.history_helper(
            codes, output=False, raw=True, hist_access_type="search", pattern=self.code_history_pattern, unique=True
        )
        self.assertEqual(len(reply["content"]["history"]), 1)


# The cold suite's kernel is restarted for the warm suite instead of shut down: the new kernel process
# finds the running sandbox again, as after a restart in JupyterLab.
_kept: dict[str, object] = {}


class TestColdStart(SandboxKernelBehaviour, jupyter_kernel_test.KernelTests):
    @classmethod
    def setUpClass(cls) -> None:
        cls.km, cls.kc = start_new_kernel(kernel_name=KERNEL, startup_timeout=300)

    def test_clear_output(self) -> None:
        # Runs first (the suite's tests run in name order): the cell waits for the sandbox to come up.
        super().test_clear_output()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.kc.stop_channels()
        cls.km.restart_kernel()
        _kept["km"] = cls.km


class TestWarm(SandboxKernelBehaviour, jupyter_kernel_test.KernelTests):
    @classmethod
    def setUpClass(cls) -> None:
        if "km" in _kept:
            cls.km = _kept.pop("km")
        else:  # run alone
            cls.km, _ = start_new_kernel(kernel_name=KERNEL, startup_timeout=300)
        cls.kc = cls.km.client()
        cls.kc.start_channels()
        cls.kc.wait_for_ready(timeout=300)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.kc.stop_channels()
        cls.km.shutdown_kernel()


class TestIopubWelcome(jupyter_kernel_test.IopubWelcomeTests):
    kernel_name = KERNEL
    support_iopub_welcome = True


if __name__ == "__main__":
    unittest.main()
