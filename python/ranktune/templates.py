"""Chain-of-thought prompt templates (YAML files; docs/templates.md).

    >>> t = ranktune.templates.load("gsm8k-cot")
    >>> t.render_prompt("What is 2 + 3?")
    "Q: What is 2 + 3?\\nA: Let's think step by step.\\n"
    >>> t.render_response("2 + 3 = 5", "5")
    '2 + 3 = 5\\n#### 5'

Names are looked up in $RANKTUNE_TEMPLATE_PATH, the source tree's examples/templates and the
templates installed with the package; anything containing '/' or ending in .yaml is a path.
"""

from typing import Dict, List

from . import _core

__all__ = ["PromptTemplate", "available", "load", "parse", "search_path"]


class PromptTemplate:
    """A chain-of-thought template: how a question becomes a prompt, how a worked solution becomes
    the training target, where generation stops and how the final answer is found.

    Attributes: ``name``, ``description``, ``format`` ("plain", "chatml", "llama3", "chat": the
    model's own chat template, see :meth:`use_tokenizer`), ``system``,
    ``prompt`` (contains ``{question}``), ``response`` (``{rationale}``, ``{answer}``),
    ``few_shot`` (list of dicts), ``stop`` (stop strings), ``answer_pattern`` (regex, one group:
    the strict answer format), ``format_pattern``, ``end_of_turn``, ``text_has_bos``, ``source``.
    """

    def __init__(self, core: "_core.PromptTemplate"):
        self._core = core

    def render_prompt(self, question: str) -> str:
        """The full prompt for `question`: system text, few-shot exemplars, then the question."""
        return self._core.render_prompt(question)

    def render_response(self, rationale: str, answer: str) -> str:
        """The training target: the worked solution and the answer in the template's format
        (chat formats end with their end-of-turn marker; plain ones need the tokenizer's EOS)."""
        return self._core.render_response(rationale, answer)

    def use_tokenizer(self, tokenizer) -> "PromptTemplate":
        """``format: chat``: render through `tokenizer`'s own chat template from now on (the
        system text, exemplars and question become messages); adds the template's end-of-turn
        marker to ``stop``. No effect on other formats. Returns self."""
        self._core.use_tokenizer(getattr(tokenizer, "_core", tokenizer))
        return self

    def exemplars_for(self, question: str) -> List[Dict[str, str]]:
        """The exemplars the prompt for `question` shows: retrieved (``exemplars`` key) or few_shot."""
        return self._core.exemplars_for(question)

    def context_for(self, question: str) -> str:
        """The documents the ``{context}`` slot gets for `question` ('' without a ``context`` key)."""
        return self._core.context_for(question)

    def with_fixed_exemplars(self) -> "PromptTemplate":
        """This template with its fixed few_shot exemplars instead of retrieved ones."""
        return PromptTemplate(self._core.with_fixed_exemplars())

    retrieves_exemplars = property(lambda self: self._core.retrieves_exemplars, doc="Exemplars come from a retriever.")
    retrieves_context = property(lambda self: self._core.retrieves_context, doc="The prompt has a retrieved {context}.")
    shots = property(lambda self: self._core.shots, doc="Exemplars per prompt (the retriever's k, or len(few_shot)).")

    def extract(self, completion: str):
        """(strict, flexible) answers of a completion, cut at this template's stop strings."""
        return _core.extract(completion, self._core)

    name = property(lambda self: self._core.name, doc="The template's name (default: the file stem).")
    description = property(lambda self: self._core.description, doc="What the template is for.")
    format = property(lambda self: self._core.format, doc='"plain", "chatml", "llama3" or "chat".')
    system = property(lambda self: self._core.system, doc="System text ('' when none).")
    prompt = property(lambda self: self._core.prompt, doc="The prompt text with {question}.")
    response = property(lambda self: self._core.response, doc="The response text with {rationale} and {answer}.")
    few_shot = property(lambda self: self._core.few_shot, doc="Exemplars: list of {question, rationale, answer}.")
    stop = property(lambda self: list(self._core.stop), doc="Generation stops at the first of these strings.")
    answer_pattern = property(lambda self: self._core.answer_pattern, doc="Regex (one group) of the strict answer.")
    format_pattern = property(lambda self: self._core.format_pattern, doc="Regex the whole completion must match ('' when none).")
    end_of_turn = property(lambda self: self._core.end_of_turn, doc='"<|im_end|>", "<|eot_id|>", or "" for plain.')
    text_has_bos = property(lambda self: self._core.text_has_bos, doc="The prompt text already starts with a BOS marker.")
    source = property(lambda self: self._core.source, doc="The file the template came from.")

    def to_dict(self) -> Dict[str, object]:
        """The template's fields as a dict."""
        return {k: getattr(self, k) for k in ("name", "description", "format", "system", "prompt", "response",
                                              "few_shot", "stop", "answer_pattern", "format_pattern", "source")}

    def __repr__(self) -> str:
        return f"PromptTemplate(name={self.name!r}, format={self.format!r}, source={self.source!r})"


def load(name_or_path: str) -> PromptTemplate:
    """Loads a template by name ("gsm8k-cot", "gsm8k-8shot", "r1", "gsm8k-cot-chatml", ...) or path.
    An unknown name is an error listing the available ones."""
    if isinstance(name_or_path, PromptTemplate):
        return name_or_path
    return PromptTemplate(_core.PromptTemplate.load(str(name_or_path)))


def parse(yaml_text: str, source: str = "<string>") -> PromptTemplate:
    """Parses template YAML (errors name `source`, the key and the line)."""
    return PromptTemplate(_core.PromptTemplate.parse(yaml_text, source))


def available() -> List[str]:
    """Names of the templates found on the search path, sorted."""
    return list(_core.available_templates())


def search_path() -> List[str]:
    """Directories searched for template names, in order (existing ones only)."""
    return list(_core.template_search_path())
