"""`jupyter sandbox mcp`: an MCP server (stdio) whose tools drive sandboxes through the SDK."""
