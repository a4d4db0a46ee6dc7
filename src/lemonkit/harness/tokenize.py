"""A subword vocabulary trained on an experiment's own training text (a ``[tokenizer]`` table).

Byte-level models of the Python docs sit on the unigram plateau for most of a CPU budget
(masked LM most of all); a 4-8k subword vocabulary gives each position more to predict.
The vocabulary is trained locally with the ``tokenizers`` library on the training split
only (nothing from a hub), and the encoded corpus is cached (``cache_dir``, git-ignored:
``.cache/`` under the results folder, or ``$LEMONKIT_CACHE``), keyed by the text's hash,
the kind and the size, so every run of an experiment shares one preparation.

A table has ``kind`` (``"bpe"``: byte-level BPE, lossless on any bytes; ``"wordpiece"``)
and ``vocab`` (the trained vocabulary's size), or only ``path``: a tokenizer of your own,
a local folder holding ``tokenizer.json`` (or that file), used as it is. Token ``t``
becomes id ``t + 2``: id 1 is the models' padding id (never in the data), and ``[MASK]``
is ``vocab + 2``, so a model's vocabulary is ``model_vocab(spec)`` = ``vocab + 4``.

Example:
    >>> import tempfile, torch
    >>> text = torch.tensor(list(b"def f(x):\\n    return x + 1\\n" * 50), dtype=torch.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     data = encode(TextData(text, text[:200]), {"kind": "bpe", "vocab": 300}, Path(tmp))
    >>> data.mask_id, len(data.train) < len(text) / 2, int(data.train.min()) >= 2
    (302, True, True)
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from lemonkit.harness.data import TextData
from lemonkit.harness.errors import HarnessError

log = logging.getLogger(__name__)

KINDS = ("bpe", "wordpiece")
SHIFT = 2  # ids 0 (unused) and 1 (the models' padding id) are not tokens


def model_vocab(spec: dict) -> int:
    """The embedding size a model needs for this vocabulary: shifted tokens, [MASK], spare."""
    return _vocab(spec) + SHIFT + 2


def _vocab(spec: dict) -> int:
    return load_file_tokenizer(spec["path"]).get_vocab_size() if "path" in spec else spec["vocab"]


def tokenizer_file(path: str) -> Path:
    """``path/tokenizer.json``, or ``path`` itself when it is the file."""
    return Path(path) / "tokenizer.json" if Path(path).is_dir() else Path(path)


def load_file_tokenizer(path: str):
    """A tokenizer of the user's own (``tokenizers`` format; no code is run)."""
    from tokenizers import Tokenizer

    file = tokenizer_file(path)
    if not file.is_file():
        raise HarnessError(f"[tokenizer]: {file} not found (path names a tokenizer.json)")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises its own Exception type
        raise HarnessError(f"[tokenizer]: {file} is not a tokenizers file ({e})") from e


def key_of(spec: dict) -> dict:
    """The tokenizer as the cache key sees it: a file by its content, not its location."""
    if "path" not in spec:
        return spec
    return {"sha256": hashlib.sha256(tokenizer_file(spec["path"]).read_bytes()).hexdigest()}


def check(spec: dict, where: str = "[tokenizer]") -> None:
    """Refuse an unknown kind, or a size outside what the ids can hold; a ``path`` alone."""
    if "path" in spec:
        if set(spec) != {"path"}:
            raise HarnessError(f"{where}: path names a tokenizer of your own; nothing else goes")
        load_file_tokenizer(spec["path"])
        return
    if spec.get("kind", "bpe") not in KINDS:
        raise HarnessError(f"{where}: unknown kind {spec.get('kind')!r} (known: {KINDS})")
    vocab = spec.get("vocab")
    if not isinstance(vocab, int) or not 260 <= vocab <= 30000:
        raise HarnessError(f"{where}: vocab must be an integer in [260, 30000], got {vocab!r}")


def cache_dir(results: Path) -> Path:
    """Where prepared data lives: ``$LEMONKIT_CACHE``, else ``results/.cache`` (ignored)."""
    root = os.environ.get("LEMONKIT_CACHE")
    return (Path(root) if root else Path(results) / ".cache") / "tokenizers"


def train_tokenizer(lines: list[str], kind: str, vocab: int):
    """A ``tokenizers.Tokenizer`` of ``vocab`` entries trained on ``lines``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab, special_tokens=["[UNK]"], show_progress=False
        )
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def _lines(raw: torch.Tensor) -> list[str]:
    return bytes(raw.tolist()).decode("utf-8", errors="replace").splitlines(keepends=True)


def _ids(tok, raw: torch.Tensor) -> torch.Tensor:
    """The whole split as one stream of shifted ids (int16; int32 for a vocabulary of your
    own beyond int16's range)."""
    encoded = tok.encode_batch(_lines(raw), add_special_tokens=False)
    flat = [i + SHIFT for e in encoded for i in e.ids]
    small = tok.get_vocab_size() + SHIFT + 2 <= torch.iinfo(torch.int16).max
    return torch.tensor(flat, dtype=torch.int16 if small else torch.int32)


def encode(data: TextData, spec: dict, cache: Path) -> TextData:
    """``data`` (bytes) as subword ids of a vocabulary trained on its training split;
    trained and encoded once, then read from ``cache``."""
    check(spec)
    kind, vocab = spec.get("kind", "bpe"), _vocab(spec)
    digest = hashlib.sha256(data.train.numpy().tobytes())
    digest.update(data.val.numpy().tobytes())
    if "path" in spec:  # the user's tokenizer: its content names the encoding
        kind = "file-" + key_of(spec)["sha256"][:12]
    path = Path(cache) / f"{kind}-{vocab}-{digest.hexdigest()[:16]}.pt"
    if path.exists():
        ids = torch.load(path)
    else:
        if "path" in spec:
            tok = load_file_tokenizer(spec["path"])
        else:
            log.info("training a %s vocabulary of %d on %d bytes", kind, vocab, len(data.train))
            tok = train_tokenizer(_lines(data.train), kind, vocab)
        ids = {"train": _ids(tok, data.train), "val": _ids(tok, data.val)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(path.with_suffix(".json")))
        tmp = path.with_suffix(".tmp")
        torch.save(ids, tmp)
        tmp.replace(path)
    return TextData(ids["train"], ids["val"], mask_id=vocab + SHIFT)
