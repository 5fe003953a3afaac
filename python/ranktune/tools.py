"""Tools in generation (docs/tools.md): when a completion ends with a complete tool call, the tool
runs, its result is inserted, and generation goes on.

    >>> registry = ranktune.tools.ToolRegistry()          # the built-in calculator, and yours:
    >>> registry.add("get_weather", lambda location: {"temperature": 22.5})
    >>> tools = ranktune.tools.ToolUse("json", registry, ranktune.tools.QWEN_TOOL_RESPONSE)
    >>> model.generate(ids, tokenizer=tok, tools=tools, max_new_tokens=128)

Call syntaxes: ``calculator`` (GSM8K's ``<<48/2=`` answered by ``24>>``) and ``json``
(``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, answered by `response` with the
result in place of ``{result}``). A Python tool is called as ``function(**arguments)``; a str
result is inserted as it is, anything else as JSON; an exception, an unknown tool name, a malformed
call or too many calls give ``{"error": ...}`` as the result instead.
"""

from typing import Optional

from . import _core

__all__ = ["ToolRegistry", "ToolUse", "QWEN_TOOL_RESPONSE", "for_template"]

ToolRegistry = _core.ToolRegistry
ToolUse = _core.ToolUse

# Qwen2.5's tool turn (its chat template's rendering of a `tool` message after the call).
QWEN_TOOL_RESPONSE = ("<|im_end|>\n<|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>\n"
                      "<|im_start|>assistant\n")


def for_template(template, registry: Optional[ToolRegistry] = None, *, max_calls: int = 32,
                 max_result_chars: int = 2000, calculator: bool = False) -> Optional[ToolUse]:
    """The tool use a template declares (its ``tools:`` section), or the calculator when
    `calculator` and it declares none; None otherwise. `registry` defaults to the built-ins."""
    core = getattr(template, "_core", template)
    return ToolUse.for_template(core, registry if registry is not None else ToolRegistry(), max_calls,
                                max_result_chars, calculator)
