"""Tools the model may call. The registry is the interface the engine uses."""

from .registry import Tool, ToolContext, ToolRegistry, ToolResult, summarize_arguments

__all__ = ["Tool", "ToolContext", "ToolRegistry", "ToolResult", "summarize_arguments"]
