"""Tokenizer.apply_chat_template: the model's own chat template rendered by ranktune's C++ Jinja
interpreter, with transformers' signature and return shapes. Every case of ../shared/chat_templates
(real models' templates, expected strings rendered by transformers) must match byte for byte or
raise the expected error; tests/data/chat_templates/jinja_cases.json (one construct per case, made
by jinja2) must match too, through a template passed as chat_template.
"""

import json
import pathlib

import pytest
import torch

import ranktune

from conftest import ROOT, SHARED, need

CASES_DIR = SHARED / "chat_templates"
JINJA_CASES = ROOT / "tests" / "data" / "chat_templates" / "jinja_cases.json"


def _conformance_cases():
    if not CASES_DIR.exists():
        return []
    out = []
    for directory in sorted(p for p in CASES_DIR.iterdir() if (p / "cases.json").exists()):
        for case in json.loads((directory / "cases.json").read_text(encoding="utf-8")):
            out.append(pytest.param(directory, case, id=f"{directory.name}/{case['name']}"))
    return out


_TOKENIZERS = {}


def _tokenizer(directory: pathlib.Path):
    if directory not in _TOKENIZERS:
        _TOKENIZERS[directory] = ranktune.AutoTokenizer.from_pretrained(directory)
    return _TOKENIZERS[directory]


def test_conformance_cases_are_present():
    need(CASES_DIR / "README.md")
    assert len(_conformance_cases()) >= 21


@pytest.mark.parametrize("directory,case", _conformance_cases())
def test_real_templates_render_exactly_as_transformers(directory, case):
    tok = _tokenizer(directory)
    call = lambda: tok.apply_chat_template(case["messages"], tokenize=False,  # noqa: E731
                                           add_generation_prompt=case["add_generation_prompt"], **case["kwargs"])
    if "expected_error" in case:
        with pytest.raises(ranktune.Error, match=case["expected_error"].replace(".", r"\.")):
            call()
    else:
        assert call() == case["expected"]


def _template_dir(tmp_path, template, **config):
    (tmp_path / "tokenizer.json").write_text(json.dumps(
        {"model": {"type": "BPE", "vocab": {"<|im_end|>": 0, "a": 1, "b": 2, "ab": 3}, "merges": ["a b"]}}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, **config}))
    return ranktune.AutoTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("case", json.loads(JINJA_CASES.read_text(encoding="utf-8")), ids=lambda c: c["name"])
def test_jinja_constructs_match_jinja2(tmp_path, case):
    # The case's variables go in as keyword arguments: template variables, as transformers passes them.
    tok = _template_dir(tmp_path, "unused")
    call = lambda: tok.apply_chat_template([], chat_template=case["template"], tokenize=False,  # noqa: E731
                                           **case["variables"])
    if "expected_error" in case:
        with pytest.raises(ranktune.Error) as raised:
            call()
        assert case["expected_error"] in str(raised.value)
    else:
        assert call() == case["expected"]


def test_tokenize_return_dict_and_batches(tmp_path):
    tok = _template_dir(tmp_path, "{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}", eos_token="<|im_end|>")
    chat = [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "a"}]
    assert tok.apply_chat_template(chat, tokenize=False) == "aba<|im_end|>"
    assert tok.apply_chat_template(chat) == [3, 1, 0]  # no BOS/EOS added again: the template wrote them
    out = tok.apply_chat_template(chat, return_dict=True)
    assert out["input_ids"] == [3, 1, 0] and out["attention_mask"] == [1, 1, 1]
    batch = tok.apply_chat_template([chat, chat[:1]], tokenize=False)
    assert batch == ["aba<|im_end|>", "ab<|im_end|>"]
    tok.pad_token = "<|im_end|>"
    tensors = tok.apply_chat_template([chat, chat[:1]], padding=True, return_tensors="pt")
    assert torch.equal(tensors, torch.tensor([[3, 1, 0], [3, 0, 0]]))
    with pytest.raises(ranktune.Error, match="incompatible with `tokenize=False`"):
        tok.apply_chat_template(chat, tokenize=False, return_dict=True)


def test_continue_final_message_and_generation_prompt(tmp_path):
    tok = _template_dir(tmp_path, "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}"
                                  "{% if add_generation_prompt %}<assistant>{% endif %}")
    chat = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "It is"}]
    assert tok.apply_chat_template(chat, tokenize=False, continue_final_message=True) == "<user>2+2?</s><assistant>It is"
    assert tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True) == "<user>2+2?</s><assistant>"
    with pytest.raises(ranktune.Error, match="not compatible"):
        tok.apply_chat_template(chat, tokenize=False, continue_final_message=True, add_generation_prompt=True)


def test_chat_template_property_and_override(tmp_path):
    tok = _template_dir(tmp_path, [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}])
    assert tok.chat_template == {"default": "D", "tool_use": "T"}
    assert tok.apply_chat_template([], tokenize=False) == "D"
    assert tok.apply_chat_template([], tokenize=False, tools=[{"type": "function"}]) == "T"
    assert tok.apply_chat_template([], tokenize=False, chat_template="tool_use") == "T"
    tok.chat_template = "mine {{ messages | length }}"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "mine 1"
    tok.chat_template = None
    assert tok.apply_chat_template([], tokenize=False) == "D"


def test_no_template_and_bad_arguments(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}))
    tok = ranktune.AutoTokenizer.from_pretrained(tmp_path)
    assert tok.chat_template is None
    with pytest.raises(ranktune.Error, match="no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    with pytest.raises(TypeError, match="JSON schemas|JSON-schema"):
        tok.apply_chat_template([], chat_template="x", tools=[len])
    with pytest.raises(TypeError, match="'title' and 'text'"):
        tok.apply_chat_template([], chat_template="x", documents=["text"])
    with pytest.raises(ranktune.Error, match="^chat_template argument:2: the Jinja filter 'wordwrap' is not supported"):
        tok.apply_chat_template([], chat_template="ok\n{{ x | wordwrap }}", tokenize=False)


# ---- template: chat -------------------------------------------------------------------------------

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _quickstart_with_chat_template(tmp_path):
    """The quickstart model's tokenizer with a ChatML chat template added to its config."""
    model = need(ROOT / "examples" / "gsm8k" / "quickstart" / "model")
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tokenizer.json").write_bytes((model / "tokenizer.json").read_bytes())
    config = json.loads((model / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHATML}))
    return ranktune.AutoTokenizer.from_pretrained(tmp_path)


def test_chat_format_template_renders_with_the_tokenizer(tmp_path):
    tok = _quickstart_with_chat_template(tmp_path)
    t = ranktune.templates.load("gsm8k-cot-chat")
    assert t.format == "chat"
    with pytest.raises(ranktune.Error, match="use_tokenizer"):
        t.render_prompt("Q?")
    t.use_tokenizer(tok)
    messages = [{"role": "system", "content": t.system}, {"role": "user", "content": "Q?"}]
    assert t.render_prompt("Q?") == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert t.render_response("r", "5") == "r\n#### 5<|im_end|>\n"
    assert "<|im_end|>" in t.stop and t.end_of_turn == "<|im_end|>"


def test_sft_and_evaluation_with_template_chat(tmp_path):
    # The trainer renders prompts through the tokenizer's chat template; the loss falls and the
    # evaluation runs with the template's end-of-turn marker as a stop string.
    from test_training import ADAPTER, SMALL, fresh_model  # the quickstart setup of the trainer tests

    tok = _quickstart_with_chat_template(tmp_path / "tok")
    train = ranktune.gsm8k.load(ROOT / "examples" / "gsm8k" / "quickstart" / "data" / "train.jsonl", limit=32)
    test = ranktune.gsm8k.load(ROOT / "examples" / "gsm8k" / "quickstart" / "data" / "test.jsonl", limit=2)
    args = ranktune.TrainingArguments(output_dir=tmp_path / "run", max_steps=6, batch_size=8, lr=3e-3,
                                      log_every=2, template="gsm8k-cot-chat", **{**ADAPTER, **SMALL, "data.max_length": 256})
    trainer = ranktune.Trainer(fresh_model(), tok, args, train_dataset=train, eval_dataset=test, progress_bar=False)
    result = trainer.train()
    assert result.status == "completed"
    assert result.training_loss < result.metrics["train_first_loss"]
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == len(test)


# A ChatML template that marks the assistant's part with {% generation %}, as transformers'
# return_assistant_tokens_mask needs (Qwen's and Llama's shipped templates have no such blocks).
GENERATION_TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ m.content + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
)


def test_assistant_tokens_mask_marks_the_generation_blocks():
    need(CASES_DIR / "qwen2.5")
    tok = _tokenizer(CASES_DIR / "qwen2.5")
    chat = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5."},
            {"role": "user", "content": "And 4 + 4?"}, {"role": "assistant", "content": "It is 8."}]
    out = tok.apply_chat_template(chat, chat_template=GENERATION_TEMPLATE, return_dict=True,
                                  return_assistant_tokens_mask=True)
    # By hand: the pieces the template writes, each tokenised alone (they meet at special tokens
    # and newlines, where Qwen's tokenizer always splits), masked when a generation block wrote it.
    pieces = [("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n", 0),
              ("2 + 3 = 5.<|im_end|>", 1),
              ("\n<|im_start|>user\nAnd 4 + 4?<|im_end|>\n<|im_start|>assistant\n", 0),
              ("It is 8.<|im_end|>", 1), ("\n", 0)]
    ids, mask = [], []
    for text, masked in pieces:
        piece = tok.encode(text, add_special_tokens=False)
        ids += piece
        mask += [masked] * len(piece)
    assert out["input_ids"] == ids
    assert out["assistant_masks"] == mask
    assert sum(mask) > 0 and mask[0] == 0

    # A batch, padded (on the right): the masks are padded with zeros like the ids.
    batch = tok.apply_chat_template([chat[:2], chat], chat_template=GENERATION_TEMPLATE, return_dict=True,
                                    return_assistant_tokens_mask=True, padding=True, return_tensors="pt")
    assert batch["assistant_masks"].shape == batch["input_ids"].shape
    short = tok.apply_chat_template(chat[:2], chat_template=GENERATION_TEMPLATE, return_dict=True,
                                    return_assistant_tokens_mask=True)["assistant_masks"]
    padded = batch["assistant_masks"][0].tolist()
    assert padded[:len(short)] == short and set(padded[len(short):]) <= {0}
    assert batch["assistant_masks"][1].tolist() == mask

    # A template without generation blocks: all zeros (transformers warns and does the same).
    plain = tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    assert plain["assistant_masks"] == [0] * len(plain["input_ids"])
    # Without return_dict, transformers returns the ids alone.
    assert tok.apply_chat_template(chat, chat_template=GENERATION_TEMPLATE, return_assistant_tokens_mask=True) == ids
