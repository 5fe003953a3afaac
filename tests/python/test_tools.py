"""Tools in generation from Python (docs/tools.md): a Python callable answers a call the model
writes, its result is inserted and generation goes on; registry errors; template tool use."""

import json
import os

import pytest
import torch

import ranktune
from ranktune import tools

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
QUICKSTART = os.path.join(ROOT, "examples", "gsm8k", "quickstart", "model")


def successor_model(tokenizer, chain):
    """A Llama whose greedy choice after token chain[i] is chain[i + 1]: every layer's output
    projections are zero (the residual stream is the token's embedding) and the untied head maps
    each embedding to the next token's row. The model writes `chain` without being trained to."""
    with open(os.path.join(QUICKSTART, "config.json")) as f:
        config = json.load(f)
    config["tie_word_embeddings"] = False
    config["num_hidden_layers"] = 1
    model = ranktune.AutoModelForCausalLM.from_config(config, seed=0)
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in params.items():
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                p.zero_()
        embed = params["model.embed_tokens.weight"]
        embed.copy_(torch.nn.functional.normalize(torch.randn(embed.shape, generator=gen), dim=1))
        head = params["lm_head.weight"]
        head.zero_()
        for current, following in zip(chain, chain[1:]):
            head[following] += 10.0 * embed[current]
    return model


def test_a_python_function_answers_a_calculator_call_written_during_generation():
    tok = ranktune.AutoTokenizer.from_pretrained(QUICKSTART)
    call = tok.encode("<<2+3=", add_special_tokens=False)
    prompt = tok.encode("Sum:", add_special_tokens=False)
    assert len(set(prompt[-1:] + call)) == len(call) + 1, "the chain needs distinct tokens"
    model = successor_model(tok, prompt[-1:] + call)

    seen = []

    def calculator(expression):
        seen.append(expression)
        return "5"  # a Python tool in place of the built-in

    registry = tools.ToolRegistry(builtins=False)
    registry.add("calculator", calculator)
    use = tools.ToolUse("calculator", registry, "{result}>>")
    out = model.generate([prompt], tokenizer=tok, tools=use, max_new_tokens=len(call) + 3)
    text = tok.decode(out[0][len(prompt):])
    assert seen == ["2+3"]
    assert text.startswith("<<2+3=5>>"), text

    # Without tools the model writes on after "=" by itself.
    plain = model.generate([prompt], max_new_tokens=len(call) + 3)
    assert not tok.decode(plain[0][len(prompt):]).startswith("<<2+3=5>>")


def test_registry_calls_python_tools_with_keyword_arguments_and_reports_errors():
    registry = tools.ToolRegistry()
    assert "calculator" in registry
    registry.add("weather", lambda location, unit="celsius": {"location": location, "unit": unit, "t": 22.5})

    def broken(**kwargs):
        raise ValueError("no such city")

    registry.add("broken", broken)
    assert registry.names() == ["broken", "calculator", "weather"]
    ok, text = registry.call("weather", json.dumps({"location": "Paris"}))
    assert ok and json.loads(text) == {"location": "Paris", "unit": "celsius", "t": 22.5}
    assert registry.call("calculator", '{"expression": "48/2"}') == (True, "24")
    ok, text = registry.call("broken", "{}")
    assert not ok and "ValueError: no such city" in json.loads(text)["error"]
    ok, text = registry.call("nope", "{}")
    assert not ok and json.loads(text)["error"].startswith("unknown tool 'nope'")

    use = tools.ToolUse("json", registry, tools.QWEN_TOOL_RESPONSE)
    response = use.respond('<tool_call>\n{"name": "weather", "arguments": {"location": "Oslo"}}\n</tool_call>')
    assert response.startswith("<|im_end|>\n<|im_start|>user\n<tool_response>\n{")
    assert '"location": "Oslo"' in response
    assert "unknown tool" in use.respond('<tool_call>{"name": "x"}</tool_call>')
    assert use.respond("no call yet") is None
    with pytest.raises(ranktune.Error, match="unknown tool syntax"):
        tools.ToolUse("xml", registry, "{result}")


def test_a_template_declares_its_tool_syntax(tmp_path):
    path = tmp_path / "tools.yaml"
    path.write_text('format: chatml\nprompt: "{question}"\nresponse: "{rationale} {answer}"\n'
                    'answer_pattern: "#### (\\\\d+)"\ntools: {syntax: json}\n')
    template = ranktune.templates.load(str(path))
    use = tools.for_template(template)
    assert use.syntax == "json" and use.response == tools.QWEN_TOOL_RESPONSE
    assert tools.for_template(ranktune.templates.load("gsm8k-cot")) is None
    assert tools.for_template(ranktune.templates.load("gsm8k-cot"), calculator=True).syntax == "calculator"


def test_gsm8k_evaluation_calls_python_tools():
    tok = ranktune.AutoTokenizer.from_pretrained(QUICKSTART)
    template = ranktune.templates.load("gsm8k-cot")
    question = {"question": "What is 2 + 3?", "answer": "#### 5"}
    prompt = tok.encode(template.render_prompt(question["question"]), add_special_tokens=True)
    call = tok.encode(" <<2+3=", add_special_tokens=False)
    model = successor_model(tok, prompt[-1:] + call)
    seen = []
    registry = tools.ToolRegistry(builtins=False)
    registry.add("calculator", lambda expression: seen.append(expression) or "5")
    result = ranktune.gsm8k.evaluate(model, tok, [question], template, calculator=True, tools=registry,
                                     max_new_tokens=len(call) + len(tok.encode("5>>", add_special_tokens=False)))
    assert seen == ["2+3"]
    assert result["accuracy_flexible"] == 1.0  # the last number is the inserted 5
