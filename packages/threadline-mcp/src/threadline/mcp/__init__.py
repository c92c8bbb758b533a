"""threadline integration for the Model Context Protocol (MCP)."""

__all__: list[str] = []
