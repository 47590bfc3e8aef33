"""An OpenAI Agents SDK agent working in a jupyter-sandbox sandbox, with no model: the SDK's
ScriptedModel plays the model (one shell call, then an answer), the sandbox is real.

    JUPYTER_SANDBOX_URL=http://127.0.0.1:8888 JUPYTER_SANDBOX_TOKEN=... python examples/openai_agents_sandbox.py
"""

import asyncio

from agents import Runner
from agents.run_config import RunConfig, SandboxRunConfig
from agents.sandbox import SandboxAgent
from agents.sandbox.capabilities import Shell
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

from jupyter_sandbox.adapters.openai_agents import JupyterSandboxClient

COMMAND = "echo 'hello from the sandbox' > greeting.txt && cat greeting.txt && pwd && python3 -c 'print(6 * 7)'"
model = ScriptedModel(
    [
        ModelStep(output=[function_call("exec_command", {"cmd": COMMAND}, call_id="call-1")]),
        ModelStep(output=[assistant_message("Done: the sandbox greeted us and computed 42.")]),
    ]
)
agent = SandboxAgent(name="scripted", model=model, instructions="Work in the sandbox.", capabilities=[Shell()])


async def main() -> None:
    run = RunConfig(sandbox=SandboxRunConfig(client=JupyterSandboxClient()))  # a new sandbox, deleted at the end
    result = await Runner.run(agent, "Greet from the sandbox and compute 6*7.", run_config=run)
    for item in result.new_items:
        if item.type == "tool_call_output_item":
            print("tool output:", item.output)
    print("final:", result.final_output)


asyncio.run(main())
