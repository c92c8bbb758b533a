"""threadline integration for LangChain and LangGraph."""

__all__: list[str] = []
