"""threadline integration for Pydantic AI."""

__all__: list[str] = []
