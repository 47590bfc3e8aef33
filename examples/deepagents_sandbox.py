"""A LangChain Deep Agents agent working in a jupyter-sandbox sandbox, with no model: a scripted
chat model asks for two tool calls (write a file, run it), then answers; the sandbox is real.

    JUPYTER_SANDBOX_URL=http://127.0.0.1:8888 JUPYTER_SANDBOX_TOKEN=... python examples/deepagents_sandbox.py
"""

from typing import Any

from deepagents import create_deep_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from jupyter_sandbox.adapters.deepagents import JupyterSandboxBackend


class ScriptedChatModel(GenericFakeChatModel):
    """Replies from a script; tools are accepted (the script already knows which it calls)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self


SCRIPT = [
    AIMessage(
        "",
        tool_calls=[
            {
                "name": "write_file",
                "args": {"file_path": "/home/sandbox/hi.py", "content": "print('hi from', 6 * 7)\n"},
                "id": "1",
            }
        ],
    ),
    AIMessage("", tool_calls=[{"name": "execute", "args": {"command": "python3 /home/sandbox/hi.py"}, "id": "2"}]),
    AIMessage("The script ran in the sandbox and printed 'hi from 42'."),
]

backend = JupyterSandboxBackend.create()  # a new sandbox, deleted at the end
try:
    agent = create_deep_agent(model=ScriptedChatModel(messages=iter(SCRIPT)), backend=backend)
    result = agent.invoke({"messages": [{"role": "user", "content": "Write hi.py and run it."}]})
    for message in result["messages"]:
        if message.type == "tool":
            print(f"tool {message.name}: {message.content}")
    print("final:", result["messages"][-1].content)
finally:
    backend.delete()
