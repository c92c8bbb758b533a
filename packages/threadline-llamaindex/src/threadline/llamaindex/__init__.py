"""threadline integration for LlamaIndex."""

__all__: list[str] = []
