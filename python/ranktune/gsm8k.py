"""GSM8K data and evaluation.

    train = ranktune.gsm8k.load("../shared/data/gsm8k/train.jsonl")   # [{"question", "rationale", "answer", "line"}]
    result = ranktune.gsm8k.evaluate(model, tokenizer, train[:20], template="gsm8k-cot", max_new_tokens=128)
    result["accuracy_strict"], result["accuracy_flexible"], result["format_rate"]

Examples are plain dicts: ``question``, ``rationale`` (the worked solution without the final line),
``answer`` (the final answer, e.g. "72") and ``line`` (1-based line in the file).
"""

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _core

__all__ = ["evaluate", "load", "load_jsonl", "normalize_examples", "split_answer", "split_validation",
           "strip_calculator_annotations"]

Example = Dict[str, Any]


def load(path: Union[str, os.PathLike], strip_calculator: bool = False, limit: int = 0) -> List[Example]:
    """Reads a GSM8K JSONL file (``question``, ``answer`` = worked solution + ``#### N``). A bad
    line is an error naming the file, the line and the field. `strip_calculator` removes
    ``<<48/2=24>>`` annotations; `limit` keeps the first N examples (0: all)."""
    return list(_core.load_jsonl(os.fspath(path), True, "question", "answer", "rationale", bool(strip_calculator),
                                 int(limit)))


def load_jsonl(path: Union[str, os.PathLike], gsm8k_answer: bool = True, question_field: str = "question",
               answer_field: str = "answer", rationale_field: str = "rationale", strip_calculator: bool = False,
               limit: int = 0) -> List[Example]:
    """Reads any reasoning JSONL: with `gsm8k_answer` the answer field holds "rationale\\n#### N";
    otherwise `rationale_field` holds the worked solution and `answer_field` only the answer."""
    return list(_core.load_jsonl(os.fspath(path), bool(gsm8k_answer), question_field, answer_field, rationale_field,
                                 bool(strip_calculator), int(limit)))


def split_answer(answer_text: str) -> Optional[Tuple[str, str]]:
    """Splits a GSM8K answer at its last ``####``: (rationale, final answer), or None."""
    return _core.split_gsm8k_answer(answer_text)


def strip_calculator_annotations(text: str) -> str:
    """"48/2 = <<48/2=24>>24" -> "48/2 = 24"."""
    return _core.strip_calculator_annotations(text)


def normalize_examples(examples: Iterable[Mapping[str, Any]], source: str = "dataset") -> List[Example]:
    """Turns GSM8K records ({"question", "answer": "...#### N"}) or split ones
    ({"question", "rationale", "answer"}) into split dicts; an error names the first bad record."""
    out = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, Mapping):
            raise TypeError(f"{source}[{i}]: expected a dict with question and answer, got {type(ex).__name__}")
        if "question" not in ex or "answer" not in ex:
            raise _core.Error(f"{source}[{i}]: needs 'question' and 'answer' (and optionally 'rationale')")
        question, answer = str(ex["question"]), str(ex["answer"])
        if "rationale" in ex:
            rationale = str(ex["rationale"])
        else:
            split = _core.split_gsm8k_answer(answer)
            if split is None:
                raise _core.Error(f"{source}[{i}]: the answer has no '#### <answer>' line; give 'rationale' "
                                 "and 'answer' separately")
            rationale, answer = split
        item = {"question": question, "rationale": rationale, "answer": answer}
        if "line" in ex:
            item["line"] = int(ex["line"])
        out.append(item)
    return out


def split_validation(examples: Sequence[Mapping[str, Any]], count: int, seed: int,
                     fraction: float = 0.0) -> Tuple[List[Example], List[Example]]:
    """(kept, held out): `count` examples (or `fraction` of them when count is 0) held out, seeded;
    the same split the trainer makes with data.validation_size and train.seed."""
    kept, held = _core.split_validation(normalize_examples(examples), int(count), int(seed), float(fraction))
    return list(kept), list(held)


def evaluate(model, tokenizer, examples: Sequence[Mapping[str, Any]], template="gsm8k-cot", *,
             max_new_tokens: int = 256, batch_size: int = 8, greedy: bool = True, samples: int = 0,
             temperature: float = 0.7, top_p: float = 0.95, top_k: int = 0, pass_at_k: Sequence[int] = (),
             repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, calculator: bool = False,
             seed: int = 0, progress: bool = False, predictions_path: Optional[str] = None,
             tools=None) -> Dict[str, float]:
    """GSM8K accuracy of `model` (a CausalLM or PeftModel) on `examples` with a chain-of-thought
    `template` (name, path or PromptTemplate): batched generation stopping at the template's stop
    strings, answers extracted strictly (the template's format) and flexibly, compared after
    normalisation. With `samples` > 0: self-consistency (``accuracy_majority``) and pass@k.
    Returns questions, accuracy_strict, accuracy_flexible, format_rate, generated_tokens, seconds
    (and accuracy_majority, pass_at_<k>); `predictions_path` gets one JSON line per question.
    `tools`: a :class:`ranktune.tools.ToolRegistry` the template's tool calls reach (default: the
    built-in calculator; `calculator=True` turns it on for templates without a ``tools:`` section)."""
    from .templates import load as load_template

    base = getattr(model, "base_model", model)
    tmpl = load_template(template)
    return dict(_core.evaluate_gsm8k(base._core, tokenizer._core, tmpl._core, normalize_examples(examples),
                                     int(batch_size), int(max_new_tokens), float(repetition_penalty),
                                     int(no_repeat_ngram_size), bool(greedy), int(samples), float(temperature),
                                     float(top_p), int(top_k), [int(k) for k in pass_at_k], bool(calculator), int(seed),
                                     bool(progress), os.fspath(predictions_path) if predictions_path else "", tools))
