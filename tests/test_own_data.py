"""The harness on a user's own data: the documented example (examples/own_data.toml) end
to end on a folder of text files, and every data kind and tokenizer it documents."""

from __future__ import annotations

import json
import random
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from helpers import EXAMPLES
from lemonkit.harness import cli
from lemonkit.harness.data import ImageData, TextData
from lemonkit.harness.errors import HarnessError
from lemonkit.harness.experiment import cache_key, load_experiment, run_config
from lemonkit.harness.runs import run_specs
from lemonkit.harness.sources import load_source
from lemonkit.harness.text import load_tokenizer

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "sees",
    "likes",
    "finds",
    "small",
    "big",
    "red",
    "old",
    "house",
    "tree",
    "river",
]


def write_texts(folder: Path, files: int = 30, seed: int = 0) -> Path:
    """A user's folder of text files: sentences from a tiny grammar."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for k in range(files):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + "."]
        sentences += [" ".join(rng.choices(WORDS, k=6)) + "." for _ in range(40)]
        (folder / f"doc{k:02d}.txt").write_text(" ".join(sentences) + "\n")
    return folder


def test_the_example_runs_on_a_user_folder(tmp_path):
    config = tmp_path / "own_data.toml"
    shutil.copy(EXAMPLES / "own_data.toml", config)
    write_texts(tmp_path / "my_texts")  # the example's relative root
    out = tmp_path / "results"
    assert cli.main([str(config), "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    folder = out / "own_data" / "tiny"
    runs = {p.stem for p in folder.glob("*.json")} - {"summary"}
    assert runs == {"small", "scratch-s0", "lemon-s0", "net2net-s0"}
    lemon = json.loads((folder / "lemon-s0.json").read_text())
    assert lemon["init_rel_error"] < 1e-4  # grown losslessly on the user's tokens
    assert lemon["key"]["data"]["tokenizer"] == {"train": "bpe", "vocab_size": 512}
    # byte-level BPE: 256 bytes + merges (this corpus has fewer than 512) + 2 unused + mask
    assert 256 + 3 < lemon["key"]["data"]["facts"]["vocab_size"] <= 512 + 3
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["target"] > 0
    assert (folder / "curves.png").stat().st_size > 10_000
    results = (out / "RESULTS.md").read_text()
    assert "own_data" in results and "FLOPs saved" in results


def test_text_file_kind_and_a_local_tokenizer_folder(tmp_path):
    texts = write_texts(tmp_path / "texts", files=12)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(p.read_text() for p in sorted(texts.iterdir())))
    tok = load_tokenizer({"train": "wordpiece", "vocab_size": 200}, [corpus.read_bytes()])
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    spec = {"kind": "text_file", "root": str(corpus), "val_every": 4}
    data = load_source(spec, {"path": str(tmp_path / "tok")})
    assert isinstance(data, TextData) and data.vocab_size == tok.get_vocab_size() + 3
    assert int(data.train.min()) >= 2 and int(data.train.max()) < data.mask_id
    sep = tok.token_to_id("[SEP]") + 2
    assert int((data.train == sep).sum()) == 9 and int((data.val == sep).sum()) == 3
    x, labels = data.mlm_batch("train", 0, 4, 16, seed=0, mask_prob=0.5)
    assert int(x.max()) <= data.mask_id and int(x.min()) >= 2  # padding id 1 never appears
    assert (labels != -100).any()


def test_bytes_without_a_tokenizer_are_the_built_in_stream(tmp_path):
    texts = write_texts(tmp_path / "texts", files=5)
    data = load_source({"kind": "text_files", "root": str(texts), "val_every": 2})
    files = sorted(texts.iterdir())
    expected = b"".join(files[k].read_bytes() + b"\n\n" for k in (0, 2, 4))
    assert bytes(data.val.tolist()) == expected and data.facts() == {}


def test_image_folder_kind(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for label, name in enumerate(("cats", "dogs", "owls")):
        (tmp_path / "images" / name).mkdir(parents=True)
        for k in range(5):
            pixels = (torch.rand(20, 24, 3, generator=g) * 80 + 60 * label).to(torch.uint8)
            Image.fromarray(pixels.numpy()).save(tmp_path / "images" / name / f"{k}.png")
    spec = {"kind": "image_folder", "root": str(tmp_path / "images"), "image_size": 16}
    data = load_source({**spec, "channels": 3, "val_every": 5})
    assert isinstance(data, ImageData) and data.train_x.shape == (12, 3, 16, 16)
    assert data.val_y.tolist() == [0, 1, 2]
    assert data.facts() == {"image_size": 16, "num_channels": 3, "num_labels": 3}
    assert data.train_x.mean().abs() < 1e-4  # normalised by the training images
    with pytest.raises(HarnessError, match="applies to text"):
        load_source(spec, {"train": "bpe"})


def test_datasets_on_disk_kind(tmp_path, monkeypatch):
    """The loader's logic on a stand-in for ``datasets`` (the package is not installed
    here): a DatasetDict's train/validation splits, or a Dataset split by val_every."""
    calls = []

    class Dataset(dict):
        column_names = property(lambda self: list(self))

    class DatasetDict(dict):
        pass

    def load_from_disk(path):
        calls.append(path)
        rows = {"text": [f"document {k}" for k in range(6)]}
        if path.endswith("dict"):
            return DatasetDict(train=Dataset(rows), validation=Dataset({"text": ["held out"]}))
        return Dataset(rows)

    fake = types.SimpleNamespace(
        load_from_disk=load_from_disk, DatasetDict=DatasetDict, Dataset=Dataset
    )
    monkeypatch.setitem(sys.modules, "datasets", fake)
    for name in ("ds_dict", "ds"):
        (tmp_path / name).mkdir()
    split = load_source({"kind": "datasets_on_disk", "root": str(tmp_path / "ds_dict")})
    assert bytes(split.val.tolist()) == b"held out\n\n"
    plain = load_source({"kind": "datasets_on_disk", "root": str(tmp_path / "ds"), "val_every": 3})
    assert bytes(plain.val.tolist()) == b"document 0\n\ndocument 3\n\n"
    with pytest.raises(HarnessError, match="no column 'body'"):
        load_source({"kind": "datasets_on_disk", "root": str(tmp_path / "ds"), "column": "body"})
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(HarnessError, match="needs the datasets package"):
        load_source({"kind": "datasets_on_disk", "root": str(tmp_path / "ds")})


def test_a_tokenizer_changes_the_cache_key_but_committed_configs_keep_theirs(tmp_path):
    config = tmp_path / "own_data.toml"
    shutil.copy(EXAMPLES / "own_data.toml", config)
    exp = load_experiment(config, "tiny", out=tmp_path)
    assert exp.data["root"] == str(tmp_path / "my_texts")  # relative to the config file
    spec = run_specs(exp.p)[0]
    with_tokenizer = cache_key(exp, spec, run_config(exp, spec, None))
    exp.tokenizer = None
    assert "data" in with_tokenizer and "data" not in cache_key(
        exp, spec, run_config(exp, spec, None)
    )


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"train": "bpe", "path": "x"}, "either path"),
        ({"train": "sentencepiece"}, "train must be one of"),
        ({"path": "/nonexistent/tok"}, "not found"),
    ],
)
def test_bad_tokenizer_tables_are_one_clear_error(spec, words):
    with pytest.raises(HarnessError, match=words):
        load_tokenizer(spec, [b"some text"])
