"""Sandboxes of a Jupyter server for agent frameworks, each an optional extra:

- `jupyter_sandbox.adapters.deepagents`: a LangChain Deep Agents sandbox backend
  (`pip install jupyter-sandbox[deepagents]`);
- `jupyter_sandbox.adapters.openai_agents`: an OpenAI Agents SDK sandbox client
  (`pip install jupyter-sandbox[openai-agents]`).

Both drive a sandbox through the SDK (jupyter_sandbox.client), so the server's operator maxima,
egress policy and checks apply to what an agent does as to anything else.
"""
