"""Tokenizers with Hugging Face's ids (tokenizer.json BPE, or tokenizer.model via SentencePiece),
behind the part of transformers' tokenizer API that fine-tuning scripts use.

    tok = ranktune.AutoTokenizer.from_pretrained("path/to/model")
    ids = tok.encode("Hello world")                      # BOS added as transformers adds it
    batch = tok(["a", "b c"], padding=True, return_tensors="pt")
    text = tok.decode(ids, skip_special_tokens=True)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                     add_generation_prompt=True)   # the model's own chat template
"""

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch

from . import _core

__all__ = ["AutoTokenizer", "BatchEncoding", "Tokenizer"]

TextInput = Union[str, Sequence[str]]


class BatchEncoding(dict):
    """What calling a tokenizer returns: a dict (``input_ids``, ``attention_mask``) whose keys are
    also attributes, as transformers' BatchEncoding."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device) -> "BatchEncoding":
        """Moves tensor values to `device` (ranktune runs on the CPU; kept for compatibility)."""
        return BatchEncoding({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.items()})


def _as_id_list(ids) -> List[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise _core.Error(f"expected a 1-D tensor of token ids, got shape {list(ids.shape)} (use batch_decode)")
        return [int(i) for i in ids.tolist()]
    return [int(i) for i in ids]


class Tokenizer:
    """Text <-> token ids. Load with :meth:`AutoTokenizer.from_pretrained`.

    Special tokens come from tokenizer_config.json (or the model). ``pad_token_id`` may be set,
    e.g. ``tok.pad_token = tok.eos_token`` as with transformers.
    """

    def __init__(self, core: "_core.Tokenizer", name_or_path: str = ""):
        self._core = core
        self.name_or_path = name_or_path
        self.padding_side = "right"
        self._pad_token_id = core.pad_token_id

    # ---- encoding ----------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """Token ids of `text`. With `add_special_tokens` (the default, as in transformers) the ids
        transformers adds (e.g. BOS for Llama) are added."""
        return list(self._core.encode(text, add_special_tokens))

    def decode(self, token_ids, skip_special_tokens: bool = False) -> str:
        """The text of `token_ids` (a list or a 1-D tensor)."""
        return self._core.decode(_as_id_list(token_ids), skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> List[str]:
        """decode() for each row of a list of id lists or a 2-D tensor."""
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        return list(self._core.decode_batch([_as_id_list(s) for s in sequences], skip_special_tokens))

    def __call__(self, text: TextInput, add_special_tokens: bool = True, padding: Union[bool, str] = False,
                 truncation: bool = False, max_length: Optional[int] = None, return_tensors: Optional[str] = None,
                 return_attention_mask: bool = True) -> BatchEncoding:
        """Tokenizes a string or a batch of strings.

        Returns a :class:`BatchEncoding` with ``input_ids`` (and ``attention_mask``): lists for
        ``return_tensors=None``, int64 tensors for ``return_tensors="pt"`` (a single string
        becomes a batch of one). ``padding``: False, True/"longest" (to the longest row) or
        "max_length" (to `max_length`), on ``self.padding_side``; ``truncation`` cuts rows to
        `max_length` (on the right).
        """
        if return_tensors not in (None, "pt"):
            raise _core.Error(f"return_tensors={return_tensors!r} is not supported; use None or 'pt'")
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings")
        rows = [list(r) for r in self._core.encode_batch(texts, add_special_tokens)]
        if truncation:
            if max_length is None:
                raise _core.Error("truncation=True needs max_length")
            rows = [r[:max_length] for r in rows]
        masks = [[1] * len(r) for r in rows]
        if padding is True or padding in ("longest", "max_length"):
            target = max((len(r) for r in rows), default=0)
            if padding == "max_length":
                if max_length is None:
                    raise _core.Error("padding='max_length' needs max_length")
                target = max_length
            pad = self.pad_token_id
            if pad is None and any(len(r) < target for r in rows):
                raise _core.Error("Asking to pad but the tokenizer has no padding token: set "
                                 "`tokenizer.pad_token = tokenizer.eos_token` (or pad_token_id)")
            for i, r in enumerate(rows):
                n = target - len(r)
                if n <= 0:
                    continue
                if self.padding_side == "left":
                    rows[i] = [pad] * n + r
                    masks[i] = [0] * n + masks[i]
                else:
                    rows[i] = r + [pad] * n
                    masks[i] = masks[i] + [0] * n
        elif padding not in (False, None, "do_not_pad"):
            raise _core.Error(f"padding={padding!r}: use False, True, 'longest' or 'max_length'")
        out = BatchEncoding()
        if return_tensors == "pt":
            if len({len(r) for r in rows}) > 1:
                raise _core.Error("rows have different lengths: pass padding=True to return tensors")
            out["input_ids"] = torch.tensor(rows, dtype=torch.long).reshape(len(rows), -1)
            if return_attention_mask:
                out["attention_mask"] = torch.tensor(masks, dtype=torch.long).reshape(len(rows), -1)
        else:
            out["input_ids"] = rows[0] if single else rows
            if return_attention_mask:
                out["attention_mask"] = masks[0] if single else masks
        return out

    # ---- chat templates ----------------------------------------------------------------------------
    @property
    def chat_template(self) -> Optional[Union[str, Dict[str, str]]]:
        """The model's chat template (tokenizer_config.json's ``chat_template`` or chat_template.jinja):
        its text, a dict of name -> text when the model names several, or None. Settable, as in
        transformers (a string, or None to go back to the model's)."""
        if getattr(self, "_chat_template_override", None) is not None:
            return self._chat_template_override
        names = list(self._core.chat_template_names)
        if not names:
            return None
        if names == ["default"]:
            return self._core.chat_template("default")
        return {name: self._core.chat_template(name) for name in names}

    @chat_template.setter
    def chat_template(self, template: Optional[str]) -> None:
        if template is not None and not isinstance(template, str):
            raise TypeError("chat_template must be a string (a Jinja template) or None")
        self._chat_template_override = template

    def apply_chat_template(self, conversation, tools: Optional[List[Dict[str, Any]]] = None,
                            documents: Optional[List[Dict[str, str]]] = None, chat_template: Optional[str] = None,
                            add_generation_prompt: bool = False, continue_final_message: bool = False,
                            tokenize: bool = True, padding: Union[bool, str] = False, truncation: bool = False,
                            max_length: Optional[int] = None, return_tensors: Optional[str] = None,
                            return_dict: bool = False, return_assistant_tokens_mask: bool = False,
                            tokenizer_kwargs: Optional[Dict[str, Any]] = None, **kwargs):
        """transformers' ``apply_chat_template``, rendered by ranktune's C++ Jinja interpreter with
        exactly transformers' output (docs/chat_templates.md lists the Jinja supported).

        ``conversation``: a list of message dicts (``role``, ``content``, and e.g. ``tool_calls``), or
        a list of such lists (a batch). ``tools``: JSON-schema dicts (Python functions are not
        converted). ``chat_template``: a name of the model's templates or a template's text.
        Extra keyword arguments become template variables (``date_string``, ``enable_thinking``, ...).
        Returns the text (``tokenize=False``; a list for a batch), else the token ids (special tokens
        are not added again: the template writes them), or with ``return_dict`` the
        :class:`BatchEncoding`. Template errors, ``raise_exception`` included, raise
        :class:`ranktune.Error` with the template's message. ``return_assistant_tokens_mask`` (with
        ``tokenize`` and ``return_dict``, as in transformers) adds ``assistant_masks``: 1 for the
        tokens the template's ``{% generation %}`` blocks rendered, 0 elsewhere (all 0 for a
        template without them).
        """
        if return_dict and not tokenize:
            raise _core.Error("`return_dict=True` is incompatible with `tokenize=False`, because there is no "
                              "dict of tokenizer outputs to return.")
        if continue_final_message and add_generation_prompt:
            raise _core.Error("continue_final_message and add_generation_prompt are not compatible")
        batched = (isinstance(conversation, (list, tuple)) and len(conversation) > 0
                   and (isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")))
        conversations = conversation if batched else [conversation]
        if tools is not None:
            for tool in tools:
                if not isinstance(tool, dict):
                    raise TypeError("tools must be JSON-schema dicts; ranktune does not convert Python functions "
                                    "to schemas")
        if documents is not None:
            for document in documents:
                if not isinstance(document, dict):
                    raise TypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
        if chat_template is None:
            chat_template = getattr(self, "_chat_template_override", None)

        def dumps(value, what):
            if value is None:
                return ""
            try:
                return json.dumps(value, ensure_ascii=False)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{what} must be JSON-like (dicts, lists, strings, numbers, bools, None): {e}") from None

        tools_json = dumps(tools, "tools")
        documents_json = dumps(documents, "documents")
        variables_json = dumps(kwargs, "chat template variables") if kwargs else ""
        rendered = []
        for chat in conversations:
            if hasattr(chat, "messages"):
                chat = chat.messages
            rendered.append(self._core.apply_chat_template(
                dumps(list(chat), "the conversation"), add_generation_prompt, continue_final_message,
                chat_template or "", tools_json, documents_json, variables_json, return_assistant_tokens_mask))
        spans = None
        if return_assistant_tokens_mask:
            spans = [s for _, s in rendered]
            rendered = [t for t, _ in rendered]
        text = rendered if batched else rendered[0]
        if not tokenize:
            return text
        out = self(text, add_special_tokens=False, padding=padding, truncation=truncation, max_length=max_length,
                   return_tensors=return_tensors, **(tokenizer_kwargs or {}))
        if return_dict and return_assistant_tokens_mask:
            masks = []
            for chat_text, chat_spans in zip(rendered, spans):
                mask = self._assistant_mask(chat_text, chat_spans)
                if truncation and max_length is not None:
                    mask = mask[:max_length]
                width = len(out["input_ids"][len(masks)]) if (batched or return_tensors) else len(out["input_ids"])
                pad = [0] * (width - len(mask))
                masks.append(pad + mask if self.padding_side == "left" else mask + pad)
            out["assistant_masks"] = masks if batched else masks[0]
            if return_tensors == "pt":
                out["assistant_masks"] = torch.tensor(masks, dtype=torch.long).reshape(len(masks), -1)
        return out if return_dict else out["input_ids"]

    def _assistant_mask(self, text: str, spans) -> List[int]:
        """transformers' assistant mask: for each {% generation %} block [begin, end) (bytes of
        `text`), the tokens from the one holding its first character to the one holding its last
        (``char_to_token``). Token n holds character c when the text of tokens 0..n is the first
        to reach past c (found by bisection over the decoded prefixes)."""
        ids = self._core.encode(text, False)
        raw = text.encode("utf-8")

        def token_at(char_index: int) -> Optional[int]:
            if char_index < 0 or char_index >= len(text):
                return None
            low, high = 0, len(ids)
            while low < high:
                middle = (low + high) // 2
                if len(self._core.decode(ids[:middle + 1], False)) > char_index:
                    high = middle
                else:
                    low = middle + 1
            return low if low < len(ids) else None

        mask = [0] * len(ids)
        for begin, end in spans:
            first = len(raw[:begin].decode("utf-8"))
            last = len(raw[:end].decode("utf-8")) - 1
            start = token_at(first)
            if start is None:  # as transformers: a block past the end (truncated) ends the mask
                break
            stop = token_at(last)
            for t in range(start, stop + 1 if stop else len(ids)):
                mask[t] = 1
        return mask

    # ---- vocabulary ----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """One more than the largest id, added tokens included."""
        return self._core.vocab_size

    def __len__(self) -> int:
        return self._core.vocab_size

    def convert_ids_to_tokens(self, ids: Union[int, Iterable[int]]):
        """The token string of an id (or of each id in a list)."""
        if isinstance(ids, int):
            return self._core.id_to_token(ids)
        return [self._core.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: Union[str, Iterable[str]]):
        """The id of a token string (or of each one in a list); None for unknown tokens."""
        if isinstance(tokens, str):
            return self._core.token_to_id(tokens)
        return [self._core.token_to_id(t) for t in tokens]

    def _token(self, token_id: Optional[int]) -> Optional[str]:
        return None if token_id is None else self._core.id_to_token(token_id)

    @property
    def bos_token_id(self) -> Optional[int]:
        """The beginning-of-sequence id, or None."""
        return self._core.bos_token_id

    @property
    def eos_token_id(self) -> Optional[int]:
        """The end-of-sequence id, or None."""
        return self._core.eos_token_id

    @property
    def pad_token_id(self) -> Optional[int]:
        """The padding id (settable), or None."""
        return self._pad_token_id

    @pad_token_id.setter
    def pad_token_id(self, value: Optional[int]) -> None:
        self._pad_token_id = None if value is None else int(value)

    @property
    def bos_token(self) -> Optional[str]:
        """The beginning-of-sequence token string, or None."""
        return self._token(self.bos_token_id)

    @property
    def eos_token(self) -> Optional[str]:
        """The end-of-sequence token string, or None."""
        return self._token(self.eos_token_id)

    @property
    def pad_token(self) -> Optional[str]:
        """The padding token string (settable to any token of the vocabulary), or None."""
        return self._token(self.pad_token_id)

    @pad_token.setter
    def pad_token(self, token: Optional[str]) -> None:
        if token is None:
            self._pad_token_id = None
            return
        token_id = self._core.token_to_id(token)
        if token_id is None:
            raise _core.Error(f"{token!r} is not a token of this vocabulary")
        self._pad_token_id = token_id

    def is_special(self, token_id: int) -> bool:
        """True for special tokens (skipped by decode(..., skip_special_tokens=True))."""
        return self._core.is_special(token_id)

    @property
    def kind(self) -> str:
        """"bpe-byte-level", "bpe-sentencepiece", "bpe" or "sentencepiece-model"."""
        return self._core.kind

    @property
    def source(self) -> str:
        """The file the tokenizer was loaded from."""
        return self._core.source

    def __repr__(self) -> str:
        return f"Tokenizer(name_or_path={self.name_or_path!r}, kind={self.kind!r}, vocab_size={self.vocab_size})"


class AutoTokenizer:
    """transformers' ``AutoTokenizer``: :meth:`from_pretrained` picks the tokenizer a model ships."""

    def __init__(self):
        raise TypeError("use AutoTokenizer.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs) -> Tokenizer:
        """Loads tokenizer.json (or, without it, tokenizer.model) and tokenizer_config.json from a
        directory, or a given tokenizer file. A ``*.model`` path selects SentencePiece itself
        (e.g. stories260k, whose SentencePiece model normalises whitespace). Keyword arguments:
        ``padding_side`` ("right" or "left"); transformers' ``use_fast`` and ``legacy`` are accepted
        and ignored; anything else is a TypeError."""
        padding_side = kwargs.pop("padding_side", "right")
        for ignored in ("use_fast", "legacy", "trust_remote_code"):
            kwargs.pop(ignored, None)
        if kwargs:
            raise TypeError(f"AutoTokenizer.from_pretrained() got unexpected keyword arguments: {sorted(kwargs)}")
        if padding_side not in ("right", "left"):
            raise _core.Error(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        path = os.fspath(pretrained_model_name_or_path)
        tok = Tokenizer(_core.Tokenizer.from_pretrained(path), name_or_path=path)
        tok.padding_side = padding_side
        return tok
