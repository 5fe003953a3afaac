"""safetensors files through ranktune's validated reader and atomic writer (the
``safetensors.torch`` names, without needing that package).

    tensors = ranktune.safetensors.load_file("golden_logits.safetensors")
    ranktune.safetensors.save_file({"w": torch.zeros(3)}, "out.safetensors")
"""

from typing import Dict, Optional

import torch

from . import _core

__all__ = ["load_file", "load_metadata", "save_file"]


def load_file(path: str, copy: bool = False) -> Dict[str, torch.Tensor]:
    """Reads every tensor of a safetensors file (bounds-checked). The tensors map the file
    copy-on-write (writing to them never changes the file); ``copy=True`` returns ordinary copies."""
    tensors, _ = _core.load_safetensors(str(path))
    return {name: (t.clone() if copy else t) for name, t in tensors}


def load_metadata(path: str) -> Dict[str, str]:
    """The ``__metadata__`` of a safetensors file."""
    _, metadata = _core.load_safetensors(str(path))
    return dict(metadata)


def save_file(tensors: Dict[str, torch.Tensor], path: str, metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes `tensors` (any strides; stored contiguous) to `path` atomically. `metadata`
    defaults to {"format": "pt"}, which Hugging Face loaders expect."""
    items = [(str(name), t.detach()) for name, t in tensors.items()]
    _core.save_safetensors(str(path), items, dict(metadata) if metadata is not None else {"format": "pt"})
