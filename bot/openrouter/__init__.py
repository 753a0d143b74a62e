"""OpenRouter: the client, its typed errors, the model catalogue and model references."""

from .catalogue import Catalogue, ModelInfo
from .client import OpenRouterClient
from .credits import Credits
from .errors import ErrorKind, OpenRouterError, display_model
from .refs import ModelRef, ModelRefError, resolve
from .types import (
    ChatRequest,
    Completion,
    Done,
    FellBack,
    PassedOver,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
)

__all__ = [
    "Catalogue",
    "ChatRequest",
    "Completion",
    "Credits",
    "Done",
    "ErrorKind",
    "FellBack",
    "ModelInfo",
    "ModelRef",
    "ModelRefError",
    "OpenRouterClient",
    "OpenRouterError",
    "PassedOver",
    "ReasoningDelta",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "Usage",
    "display_model",
    "resolve",
]
