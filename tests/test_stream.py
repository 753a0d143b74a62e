"""SSE decoding and chunk assembly: pure logic, no server."""

from __future__ import annotations

from bot.openrouter.caching import MAX_BREAKPOINTS, add_cache_breakpoints
from bot.openrouter.stream import SSEDecoder, StreamAssembler


def decode(lines: list[str]) -> list[str]:
    decoder = SSEDecoder()
    out = [p for p in (decoder.feed(line) for line in lines) if p is not None]
    tail = decoder.flush()
    return out + ([tail] if tail is not None else [])


def test_sse_skips_comments_and_joins_data_lines() -> None:
    lines = [
        ": OPENROUTER PROCESSING",
        "",
        "event: message",
        'data: {"a":',
        "data: 1}",
        "",
        ":keep-alive",
        "data:[DONE]",
    ]
    assert decode(lines) == ['{"a":\n1}', "[DONE]"]


def test_blank_lines_alone_make_no_events() -> None:
    assert decode(["", "", ": ping", ""]) == []


def test_tool_call_deltas_assemble_by_index() -> None:
    asm = StreamAssembler("m")

    def tool(index: int, **function: str) -> dict[str, object]:
        return {"choices": [{"delta": {"tool_calls": [{"index": index, "function": function}]}}]}

    asm.add(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "grep", "arguments": ""},
                            },
                            {
                                "index": 1,
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "read", "arguments": ""},
                            },
                        ]
                    }
                }
            ]
        }
    )
    asm.add(tool(1, arguments='{"path": '))
    asm.add(tool(0, arguments='{"pattern": "ERR'))
    asm.add(tool(1, arguments='"a.log"}', name="read"))
    asm.add(tool(0, arguments='OR"}'))
    asm.add({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    done = asm.completion()
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls] == [
        ("call_a", "grep", {"pattern": "ERROR"}),
        ("call_b", "read", {"path": "a.log"}),
    ]
    assert done.finish_reason == "tool_calls"


def test_unreadable_arguments_parse_to_none() -> None:
    asm = StreamAssembler("m")
    asm.add(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c",
                                "function": {"name": "x", "arguments": "{not json"},
                            },
                        ]
                    }
                }
            ]
        }
    )
    call = asm.completion().tool_calls[0]
    assert call.arguments is None
    assert call.raw_arguments == "{not json"


def test_usage_and_model_from_any_chunk() -> None:
    asm = StreamAssembler("asked/model")
    asm.add(
        {
            "id": "gen-1",
            "model": "served/model-20250101",
            "provider": "P",
            "choices": [{"delta": {"content": "hi"}}],
        }
    )
    asm.add(
        {
            "choices": [{"delta": {"content": "!"}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "total_tokens": 7,
                "cost": 0.001,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        }
    )
    done = asm.completion()
    assert done.text == "hi!"
    assert done.model == "served/model-20250101"
    assert done.generation_id == "gen-1"
    assert done.provider == "P"
    assert done.usage is not None
    assert (done.usage.total_tokens, done.usage.cost, done.usage.cached_tokens) == (7, 0.001, 4)


def test_error_chunk_is_reported() -> None:
    asm = StreamAssembler("m")
    asm.add({"choices": [{"delta": {"content": "par"}}]})
    added = asm.add(
        {
            "error": {"code": 502, "message": "Provider returned error"},
            "choices": [{"delta": {"content": ""}, "finish_reason": "error"}],
        }
    )
    assert added.error == {"code": 502, "message": "Provider returned error"}
    assert asm.text == "par"


def test_breakpoints_never_exceed_four() -> None:
    parts = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]
    messages = [
        {"role": "system", "content": "sys"},
        *({"role": "user", "content": [dict(p) for p in parts]} for _ in range(3)),
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "now"},
    ]
    out = add_cache_breakpoints(messages)
    total = sum(
        1
        for m in out
        if isinstance(m["content"], list)
        for p in m["content"]
        if "cache_control" in p
    )
    assert total == MAX_BREAKPOINTS
    assert out[0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert out[4]["content"] == "a"  # the budget ran out before the history breakpoint


def test_tool_loop_rounds_mark_the_newest_tool_result() -> None:
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "find errors"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
        {"role": "tool", "tool_call_id": "c", "content": "ERROR x"},
    ]
    out = add_cache_breakpoints(messages)
    marked = [i for i, m in enumerate(out) if isinstance(m["content"], list)]
    assert marked == [0, 3]
