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
from lemonkit.harness import cli, tokenize
from lemonkit.harness.data import ImageData, TextData
from lemonkit.harness.errors import HarnessError
from lemonkit.harness.experiment import load_data, load_experiment
from lemonkit.harness.models import build_model
from lemonkit.harness.sources import load_source

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


IMAGE_CONFIG = """
name = "images"
task = "image"
[data]
kind = "image_folder"
root = "images"
image_size = 16
channels = 3
val_every = 5
[preset.tiny]
small = { arch = "vit", hidden = 32, layers = 2, heads = 4, intermediate = 64, patch = 4 }
large = { arch = "vit", hidden = 48, layers = 3, heads = 6, intermediate = 96, patch = 4 }
"""


def test_the_example_runs_on_a_user_folder(tmp_path):
    config = tmp_path / "own_data.toml"
    shutil.copy(EXAMPLES / "own_data.toml", config)
    write_texts(tmp_path / "my_texts")  # the example's relative root
    out = tmp_path / "results"
    assert cli.main([str(config), "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    folder = out / "own_data" / "tiny"
    runs = {p.stem for p in folder.glob("*.json")} - {"summary", "invocation"}
    assert runs == {"small", "scratch-s0", "lemon-s0", "net2net-s0"}
    lemon = json.loads((folder / "lemon-s0.json").read_text())
    assert lemon["init_rel_error"] < 1e-4  # grown losslessly on the user's tokens
    assert lemon["key"]["tokenizer"] == {"kind": "bpe", "vocab": 512}
    assert lemon["key"]["models"]["large"]["vocab"] == 512 + 4
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["target"] > 0
    assert (folder / "curves.png").stat().st_size > 10_000
    results = (out / "RESULTS.md").read_text()
    assert "own_data" in results and "FLOPs saved" in results


def test_text_file_kind_and_a_tokenizer_of_your_own(tmp_path):
    texts = write_texts(tmp_path / "texts", files=12)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(p.read_text() for p in sorted(texts.iterdir())))
    tok = tokenize.train_tokenizer([corpus.read_text()], "wordpiece", 300)
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    spec = {"path": str(tmp_path / "tok")}
    tokenize.check(spec)
    assert tokenize.model_vocab(spec) == tok.get_vocab_size() + 4
    key = tokenize.key_of(spec)
    assert set(key) == {"sha256"} and str(tmp_path) not in json.dumps(key)  # no machine path
    raw = load_source({"kind": "text_file", "root": str(corpus), "val_every": 4})
    assert isinstance(raw, TextData) and raw.train.dtype == torch.uint8
    assert bytes(raw.val.tolist()).count(b"\n\n") == 3  # paragraphs 0, 4 and 8
    data = tokenize.encode(raw, spec, tmp_path / "cache")
    assert data.mask_id == tok.get_vocab_size() + 2
    assert int(data.train.min()) >= 2 and int(data.train.max()) < data.mask_id
    x, labels = data.mlm_batch("train", 0, 4, 16, seed=0, mask_prob=0.5)
    assert int(x.max()) <= data.mask_id and not (x == 1).any()  # 1: the padding id
    assert (labels != -100).any()
    with pytest.raises(HarnessError, match="nothing else goes"):
        tokenize.check({**spec, "vocab": 300})
    with pytest.raises(HarnessError, match="not found"):
        tokenize.check({"path": str(tmp_path / "nowhere")})


def test_bytes_without_a_tokenizer_are_the_built_in_stream(tmp_path):
    texts = write_texts(tmp_path / "texts", files=5)
    data = load_source({"kind": "text_files", "root": str(texts), "val_every": 2})
    files = sorted(texts.iterdir())
    expected = b"".join(files[k].read_bytes() + b"\n\n" for k in (0, 2, 4))
    assert bytes(data.val.tolist()) == expected and data.mask_id == 256


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
    assert data.geometry() == {"image_size": 16, "channels": 3, "labels": 3}
    assert data.train_x.mean().abs() < 1e-4  # normalised by the training images
    config = tmp_path / "images.toml"
    config.write_text(IMAGE_CONFIG)
    exp = load_experiment(config, "tiny", out=tmp_path / "results")
    load_data(exp)  # the ViTs take the folder's images: size, channels, classes
    for model in ("small", "large"):
        assert exp.p[model]["image_size"] == 16 and exp.p[model]["labels"] == 3
        vit = build_model(exp.p[model], "image", 0)
        assert vit(pixel_values=data.val_x).logits.shape == (3, 3)


def test_datasets_on_disk_kind(tmp_path, monkeypatch):
    """The loader's logic on a stand-in for ``datasets`` (also where the package is not
    installed), and the one-line error when it is missing."""
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


def test_datasets_on_disk_with_the_real_package(tmp_path):
    """A real ``datasets`` folder (``save_to_disk``): a DatasetDict's splits, and a plain
    Dataset split by ``val_every``."""
    datasets = pytest.importorskip("datasets")
    rows = {"text": [f"document {k}" for k in range(6)], "id": list(range(6))}
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(rows),
        validation=datasets.Dataset.from_dict({"text": ["held out"], "id": [9]}),
    ).save_to_disk(str(tmp_path / "ds_dict"))
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    split = load_source({"kind": "datasets_on_disk", "root": str(tmp_path / "ds_dict")})
    assert bytes(split.val.tolist()) == b"held out\n\n"
    assert b"document 5" in bytes(split.train.tolist())
    plain = load_source({"kind": "datasets_on_disk", "root": str(tmp_path / "ds"), "val_every": 3})
    assert bytes(plain.val.tolist()) == b"document 0\n\ndocument 3\n\n"
    with pytest.raises(HarnessError, match="no column 'body'"):
        load_source({"kind": "datasets_on_disk", "root": str(tmp_path / "ds"), "column": "body"})
