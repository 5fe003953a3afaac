"""Finding the final answer in a completion, and comparing answers (ranktune::prompt).

    >>> ranktune.extract_answer("... so she has 5 + 7 = 12 apples.\\n#### 12")
    '12'
    >>> ranktune.answers_match("1,000.00", "1000")
    True

When a completion states an answer more than once, the last occurrence wins. Answers come back
normalised: numbers as :func:`normalize_number` writes them, anything else trimmed.
"""

from typing import Optional, Tuple, Union

from . import _core

__all__ = ["answers_match", "extract", "extract_answer", "extract_with_pattern", "normalize_number", "parse_number"]


def extract_answer(text: str) -> Optional[str]:
    """The answer of `text` in any known format (``#### N``, "The answer is N", ``\\boxed{N}``,
    ``<answer>N</answer>``; the last one), else the last number in the text, else None."""
    return _core.extract_answer(text)


def extract(completion: str, template) -> Tuple[Optional[str], Optional[str]]:
    """(strict, flexible) answers of `completion`.

    `template` is a :class:`ranktune.templates.PromptTemplate` or a template name or path. The
    completion is first cut at the template's stop strings; strict means the template's own
    ``answer_pattern`` (e.g. ``#### N``), flexible any known format or the last number. For a bare
    regex use :func:`extract_with_pattern`.
    """
    from .templates import PromptTemplate, load

    if isinstance(template, PromptTemplate):
        return _core.extract(completion, template._core)
    return _core.extract(completion, load(template)._core)


def extract_with_pattern(completion: str, answer_pattern: str) -> Tuple[Optional[str], Optional[str]]:
    """(strict, flexible) answers of `completion`, strict meaning `answer_pattern` (a regex with
    exactly one capture group) matches. The completion is not cut at stop strings."""
    return _core.extract_with_pattern(completion, answer_pattern)


def answers_match(predicted: Union[str, int, float, None], gold: Union[str, int, float]) -> bool:
    """True when both are numbers equal after normalisation (relative tolerance 1e-9), or, when
    either is not a number, when the texts match ignoring case, surrounding space and a trailing
    period. ``None`` (no answer found) never matches."""
    if predicted is None:
        return False
    return _core.answers_match(str(predicted), str(gold))


def normalize_number(text: str) -> str:
    """Canonical text of a number as people and models write it ("1,000.00" -> "1000",
    "$5" -> "5", "3/4" -> "0.75"), or the trimmed input when it is not a number."""
    return _core.normalize_number(text)


def parse_number(text: str) -> Optional[float]:
    """The value of :func:`normalize_number` (text), or None when `text` is not a number."""
    return _core.parse_number(text)
