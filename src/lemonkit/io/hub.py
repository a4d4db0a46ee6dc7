"""A source named by a Hugging Face Hub repo id (``org/name``) instead of a folder.

:func:`resolve_source` turns what the user typed into a local folder. An existing folder
wins (as in ``transformers``); otherwise text shaped like ``org/name`` is resolved with
``huggingface_hub.snapshot_download``, limited to the files lemonkit reads or copies
(config, safetensors shards and index, tokenizer, processor and generation files, the
card for its license): pickles and other weight formats are never downloaded.
``huggingface_hub`` itself honours ``HF_HOME`` / ``HF_HUB_CACHE`` (where the cache is),
``HF_HUB_OFFLINE=1`` (the cache only) and ``HF_TOKEN`` (private and gated repos).

Example::

    source = resolve_source("HuggingFaceTB/SmolLM2-135M", revision="main")
    source.path    # .../hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/<commit>
    source.name    # "HuggingFaceTB/SmolLM2-135M": what the model card names as its base
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from lemonkit.errors import CheckpointError
from lemonkit.io.checkpoint import PICKLE_SUFFIXES

log = logging.getLogger(__name__)

# what a repo id looks like (the Hub's own rule: letters, digits, '-', '_', '.')
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")

# the files a source needs: what lemonkit reads or copies into the output, nothing else
ALLOW_PATTERNS = [
    "config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "spiece.model",
    "chat_template.*",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "README.md",  # read for its license only; never copied to the output
]
# never fetched, whatever an allow pattern matches ("tokenizer*" and "vocab.*" also match
# tokenizer.pkl, vocab.bin ...): pickles and weights in other formats
IGNORE_PATTERNS = [
    f"*{suffix}"
    for suffix in (*PICKLE_SUFFIXES, ".pickle", ".joblib", ".npy", ".npz", ".h5", ".msgpack")
    + (".onnx", ".onnx_data", ".gguf", ".tflite", ".ot", ".mlmodel")
]


@dataclass(frozen=True)
class Source:
    """A resolved source: its local folder, and the Hub repo it came from (if any)."""

    path: Path
    name: str  # what the user named: a repo id or the path as given
    repo_id: str | None = None
    revision: str | None = None  # as asked (None: the default branch)
    commit: str | None = None  # the snapshot's commit, for an exact replay

    def to_json(self) -> dict:
        """The provenance record of the source."""
        record = {"path": str(self.path), "name": self.name}
        if self.repo_id:
            record.update(repo_id=self.repo_id, revision=self.revision, commit=self.commit)
        return record


def is_repo_id(text: str) -> bool:
    """``org/name`` and not an existing path."""
    return bool(REPO_ID.fullmatch(text)) and not Path(text).exists()


def resolve_source(src: str | Path | Source, revision: str | None = None) -> Source:
    """A folder stays itself; a repo id becomes its cached snapshot (downloaded if
    needed and allowed). ``revision``: a branch, tag or commit (repo ids only)."""
    if isinstance(src, Source):
        return src
    text = str(src)
    if not is_repo_id(text):
        if revision is not None:
            raise CheckpointError(f"--revision applies to Hub repo ids, and {text} is a path")
        return Source(Path(text), text)
    folder = _snapshot(text, revision)
    return Source(folder, text, text, revision, folder.name)


def _snapshot(repo_id: str, revision: str | None) -> Path:
    """``snapshot_download`` with lemonkit's files only; its errors as one line."""
    try:
        import huggingface_hub as hub
        from huggingface_hub import errors
    except ImportError as e:  # pragma: no cover - transformers depends on it
        raise CheckpointError(f"{repo_id} is not a folder (huggingface_hub is missing)") from e
    where = f"{repo_id}" + (f" at revision {revision}" if revision else "")
    log.debug("resolving %s on the Hugging Face Hub (cache: %s)", where, hub.constants.HF_HUB_CACHE)
    try:
        folder = hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=ALLOW_PATTERNS,
            ignore_patterns=IGNORE_PATTERNS,
            library_name="lemonkit",
        )
    except errors.GatedRepoError as e:
        raise CheckpointError(
            f"{where} is gated: accept its terms on the Hub and set HF_TOKEN"
        ) from e
    except errors.RevisionNotFoundError as e:
        raise CheckpointError(f"{repo_id} has no revision {revision!r} on the Hub") from e
    except errors.RepositoryNotFoundError as e:
        raise CheckpointError(
            f"{repo_id} is not a folder, and the Hub has no such repository (if it is "
            "private, set HF_TOKEN)"
        ) from e
    except (errors.LocalEntryNotFoundError, errors.IncompleteSnapshotError) as e:
        raise CheckpointError(_offline_message(where, hub)) from e
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{where}: the Hub refused it ({' '.join(str(e).split())[:200]})"
        ) from e
    return Path(folder)


def _offline_message(where: str, hub) -> str:
    cache = hub.constants.HF_HUB_CACHE
    if hub.constants.is_offline_mode():
        return (
            f"{where} is not a folder, and HF_HUB_OFFLINE is set but the cache {cache} has "
            "no complete copy of it (download it once online, or name a local folder)"
        )
    return f"{where}: the Hub cannot be reached and the cache {cache} has no complete copy"
