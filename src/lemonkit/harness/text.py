r"""Text sources as documents, and the ``[tokenizer]`` that turns them into token ids.

A text kind of ``sources`` returns :class:`Documents` (bytes, per split). Without a
tokenizer they become the byte stream of ``TextData`` (each document followed by a blank
line); with one, each document is decoded as UTF-8, encoded, and followed by the
tokenizer's separator token. A config's ``[tokenizer]`` table is either

- ``path = "my_tokenizer/"``: a local folder holding ``tokenizer.json`` (or that file); or
- ``train = "bpe"`` or ``"wordpiece"`` with ``vocab_size`` (default 1000): trained on the
  spot with ``tokenizers`` on the *training* documents only.

Token ids are shifted by 2 (``TextData.first_id``: id 1 is the masked-LM models' padding
id), and the mask id follows the last token.

Example:
    >>> docs = Documents([b"the cat sat on the mat"] * 20, [b"the cat"])
    >>> data = to_text_data(docs, {"train": "bpe", "vocab_size": 300})
    >>> data.first_id, data.mask_id == data.vocab_size - 1, int(data.train.min()) >= 2
    (2, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lemonkit.harness.data import TextData
from lemonkit.harness.errors import HarnessError

SHIFT = 2  # ids 0 and 1 stay unused (1: the padding id of the masked-LM models)
SEPARATORS = ("<|endoftext|>", "</s>", "[SEP]", "<eos>", "<|end_of_text|>")
TRAINED = ("bpe", "wordpiece")


@dataclass
class Documents:
    """The documents of each split, as bytes."""

    train: list[bytes]
    val: list[bytes]


def to_text_data(docs: Documents, tokenizer: dict | None = None) -> TextData:
    """Bytes (no tokenizer: exactly the byte stream the built-in corpora use) or ids."""
    if not docs.train or not docs.val:
        raise HarnessError("the data has no training or no validation documents")
    if tokenizer is None:
        return TextData(_bytes(docs.train), _bytes(docs.val))
    tok = load_tokenizer(tokenizer, docs.train)
    separator = _separator(tok)
    vocab = tok.get_vocab_size()

    def ids(split: list[bytes]) -> torch.Tensor:
        out: list[int] = []
        for encoding in tok.encode_batch([d.decode("utf-8", "replace") for d in split]):
            out += encoding.ids + separator
        return torch.tensor(out, dtype=torch.int64) + SHIFT

    return TextData(ids(docs.train), ids(docs.val), vocab + SHIFT + 1, vocab + SHIFT, SHIFT)


def _bytes(parts: list[bytes]) -> torch.Tensor:
    return torch.frombuffer(bytearray(b"".join(p + b"\n\n" for p in parts)), dtype=torch.uint8)


def load_tokenizer(spec: dict, train_docs: list[bytes]):
    """A ``tokenizers.Tokenizer`` from ``[tokenizer]``: a local file/folder, or trained."""
    from tokenizers import Tokenizer

    unknown = sorted(set(spec) - {"path", "train", "vocab_size"})
    if unknown or ("path" in spec) == ("train" in spec):
        raise HarnessError(
            "[tokenizer] takes either path = a tokenizer folder, or train = 'bpe' or "
            f"'wordpiece' with vocab_size (got {sorted(spec)})"
        )
    if "path" in spec:
        path = Path(spec["path"])
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise HarnessError(f"[tokenizer]: {file} not found (a tokenizer.json is needed)")
        return Tokenizer.from_file(str(file))
    if spec["train"] not in TRAINED:
        raise HarnessError(f"[tokenizer]: train must be one of {TRAINED}, not {spec['train']!r}")
    return train_tokenizer(spec["train"], int(spec.get("vocab_size", 1000)), train_docs)


def train_tokenizer(kind: str, vocab_size: int, docs: list[bytes]):
    """A byte-level BPE (GPT-2 style) or a WordPiece (BERT style), trained on ``docs``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=["[UNK]", "[SEP]"], show_progress=False
        )
    tok.train_from_iterator((d.decode("utf-8", "replace") for d in docs), trainer=trainer)
    return tok


def _separator(tok) -> list[int]:
    """The id that ends a document (end of text, [SEP]...), if the tokenizer has one."""
    for token in SEPARATORS:
        found = tok.token_to_id(token)
        if found is not None:
            return [found]
    return []
