"""Every output folder gets its own model card, OUT/README.md (front matter + growth +
verification + training), and never the source's."""

import json

import torch
import yaml

from lemonkit.cli.main import main
from lemonkit.io.model_card import front_matter
from lemonkit.testing.zoo import build


def _card(out):
    text = (out / "README.md").read_text()
    return front_matter(text), text


def test_card_of_a_local_folder(tmp_path):
    src = tmp_path / "small"
    build("gpt2", dtype=torch.float32).save_pretrained(src)
    (src / "README.md").write_text(
        "---\nlicense: other\nlicense_name: my-license\nlicense_link: LICENSE\n---\n# Mine\n"
    )
    out = tmp_path / "big"
    argv = ["-q", "expand", str(src), str(out), "--hidden-size", "96", "--num-layers", "3"]
    assert main([*argv, "--seed", "7"]) == 0
    meta, text = _card(out)
    assert "base_model" not in meta  # a local folder is no Hub id (the Hub would link it)
    assert meta["library_name"] == "transformers"
    assert meta["tags"] == ["lemonkit", "model-expansion"]
    assert (meta["license"], meta["license_name"], meta["license_link"]) == (
        "other",
        "my-license",
        "LICENSE",
    )
    assert "# Mine" not in text
    assert "| hidden_size | 64 | 96 |" in text and "| num_layers | 2 | 3 |" in text
    assert "- seed: 7" in text and "`lemon`" in text and "`zero`" in text
    assert "Lossless" in text and "LemonTrainer" in text and "GPT2LMHeadModel" in text
    record = json.loads((out / "lemonkit.json").read_text())["verification"]
    assert f"level `{record['level']}`" in text  # the certificate, in words
    assert f"each of the {record['parts']['parts']} stored tensors" in text
    assert "nan" not in text


def test_card_without_a_source_card_or_verification(tmp_path):
    src = tmp_path / "small"
    build("llama", dtype=torch.float32).save_pretrained(src)
    out = tmp_path / "big"
    assert main(["-q", "expand", str(src), str(out), "--num-layers", "3", "--no-verify"]) == 0
    meta, text = _card(out)
    assert "license" not in meta and "base_model" not in meta
    assert "Not run" in text
    # the front matter is valid YAML on its own
    assert yaml.safe_load(text.split("---")[1]) == meta


def test_lossy_runs_say_so(tmp_path):
    src = tmp_path / "small"
    build("gpt2", dtype=torch.float32).save_pretrained(src)
    out = tmp_path / "aki"
    argv = ["-q", "expand", str(src), str(out), "--hidden-size", "96", "--method", "aki"]
    assert main([*argv, "--allow-lossy"]) == 0
    _, text = _card(out)
    assert "**Not lossless**" in text and "lossy by request" in text
