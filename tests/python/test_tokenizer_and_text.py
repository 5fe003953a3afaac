"""Tokenizers, templates, answers and GSM8K data through Python."""

import pytest
import torch

import ranktune
from conftest import QUICKSTART_DATA, SHARED, need


@pytest.mark.parametrize("name", ["gpt-2", "llama-spm"])
def test_tokenizer_gives_hugging_face_ids_on_the_conformance_vectors(name):
    folder = need(SHARED / "tokenizers" / name)
    tok = ranktune.AutoTokenizer.from_pretrained(folder / "tokenizer.json")
    cases = (folder / "vectors.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    expected = (folder / "vectors.out").read_text(encoding="utf-8").split("\n")
    assert len(cases) > 40
    for text, ids in zip(cases, expected):
        assert tok.encode(text, add_special_tokens=False) == [int(i) for i in ids.split()], repr(text)


def test_tokenizer_call_pads_batches_and_returns_tensors(stories):
    tok = ranktune.AutoTokenizer.from_pretrained(stories)
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2 and tok.eos_token == "</s>"
    ids = tok.encode("Once upon a time")
    assert ids[0] == tok.bos_token_id  # add_special_tokens=True by default, as in transformers
    assert tok.decode(ids, skip_special_tokens=True) == "Once upon a time"

    single = tok("Once upon a time")
    assert single.input_ids == ids and single["attention_mask"] == [1] * len(ids)
    with pytest.raises(ValueError, match="pad_token"):
        tok(["a", "a b c d"], padding=True)
    tok.pad_token = tok.eos_token
    batch = tok(["a", "a b c d"], padding=True, return_tensors="pt")
    assert batch.input_ids.dtype == torch.long and batch.input_ids.shape[0] == 2
    assert batch.attention_mask[0].tolist()[-1] == 0 and batch.input_ids[0, -1] == tok.pad_token_id
    tok.padding_side = "left"
    left = tok(["a", "a b c d"], padding=True, return_tensors="pt")
    assert left.attention_mask[0, 0] == 0 and left.attention_mask[0, -1] == 1
    assert tok.batch_decode(left.input_ids, skip_special_tokens=True) == ["a", "a b c d"]
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "a b c d"], return_tensors="pt")
    assert tok(["abc"], truncation=True, max_length=2)["input_ids"] == [tok.encode("abc")[:2]]


def test_tokenizer_errors_name_the_file(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ranktune.Error, match="tokenizer.json"):
        ranktune.AutoTokenizer.from_pretrained(bad)


def test_templates_render_and_extract():
    assert {"gsm8k-cot", "gsm8k-8shot", "r1"} <= set(ranktune.templates.available())
    t = ranktune.templates.load("gsm8k-cot")
    assert t.render_prompt("What is 2 + 3?") == "Q: What is 2 + 3?\nA: Let's think step by step.\n"
    assert t.render_response("2 + 3 = 5", "5") == "2 + 3 = 5\n#### 5"
    assert "\nQ:" in t.stop and t.format == "plain" and t.answer_pattern
    assert t.extract("2 + 3 = 5\n#### 5\nQ: next question #### 7") == ("5", "5")
    assert ranktune.extract("She has 12 apples.", t) == (None, "12")
    with pytest.raises(ranktune.Error, match="gsm8k-cot"):
        ranktune.templates.load("no-such-template")
    custom = ranktune.templates.parse('prompt: "{question} ="\nresponse: " {rationale} {answer}"\nanswer_pattern: "= (\\\\d+)"\n',
                                      "inline.yaml")
    assert custom.render_prompt("1+1") == "1+1 =" and custom.source == "inline.yaml"
    with pytest.raises(ranktune.Error, match=r"inline.yaml:2: 'response'.*\{rationale\}"):
        ranktune.templates.parse('prompt: "{question}"\nresponse: "{answer}"\n', "inline.yaml")


def test_answers():
    assert ranktune.extract_answer("so 3 * 4 = 12.\n#### 12") == "12"
    assert ranktune.extract_answer("The answer is $1,000.00.") == "1000"
    assert ranktune.extract_answer("no number here") is None
    assert ranktune.answers_match("1,000.00", "1000") and ranktune.answers_match(72, "72")
    assert not ranktune.answers_match("0.33", "1/3") and not ranktune.answers_match(None, "1")
    assert ranktune.normalize_number("$5.50") == "5.5"


def test_gsm8k_loading_and_normalisation(tmp_path):
    examples = ranktune.gsm8k.load(need(QUICKSTART_DATA) / "train.jsonl", strip_calculator=True, limit=5)
    assert len(examples) == 5 and set(examples[0]) == {"question", "rationale", "answer", "line"}
    assert "<<" not in examples[0]["rationale"] and examples[0]["line"] == 1
    raw = [{"question": "q", "answer": "step 1\nstep 2\n#### 7"}, {"question": "q2", "rationale": "r", "answer": "8"}]
    assert ranktune.gsm8k.normalize_examples(raw) == [
        {"question": "q", "rationale": "step 1\nstep 2", "answer": "7"},
        {"question": "q2", "rationale": "r", "answer": "8"},
    ]
    with pytest.raises(ValueError, match=r"dataset\[0\].*####"):
        ranktune.gsm8k.normalize_examples([{"question": "q", "answer": "7"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "7 #### 7"}\n{"question": "q"}\n')
    with pytest.raises(ranktune.Error, match="bad.jsonl:2"):
        ranktune.gsm8k.load(bad)
    kept, held = ranktune.gsm8k.split_validation(examples, 2, seed=0)
    assert len(kept) == 3 and len(held) == 2
