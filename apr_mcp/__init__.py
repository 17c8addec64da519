"""apr-mcp: adaptive parallel reasoning as an MCP server and a CLI."""

__version__ = "0.1.0"
