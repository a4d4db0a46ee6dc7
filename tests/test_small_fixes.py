"""Issue 15's smaller items: ``lemonkit list`` sees tables registered later, a stale
``scratch-*.json`` does not move the target, the chunk size is in the provenance, and
tables declared as data (``--table``) are validated and run no code."""

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import lemonkit
import lemonkit.engine.tensor
from contract import assert_contract
from lemonkit import tables
from lemonkit.cli.main import main
from lemonkit.harness import report
from lemonkit.tables.data import table_from_data, table_to_data
from lemonkit.tables.gpt2 import GPT2
from lemonkit.testing.zoo import build


@pytest.fixture
def registry(monkeypatch):
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(tables, "TABLES", list(tables.TABLES))


def test_list_sees_a_table_registered_after_import(registry, capsys):
    from lemonkit.cli.describe import describe_architectures  # imported first

    lemonkit.register(replace(GPT2, model_types=("my_late_gpt",)))
    assert "my_late_gpt: GPT2LMHeadModel" in describe_architectures()
    assert main(["list"]) == 0
    assert "my_late_gpt" in capsys.readouterr().out


def _run(group: str, final: float, target: float | None = None) -> dict:
    hist = [{"step": 10 * i, "val_loss": v, "flops": 10.0 * i} for i, v in enumerate([5, final])]
    models = {"small": {"hidden": 8}, "large": {"hidden": 16}}
    init = {"source": "small", "reference": "scratch"}.get(group, "expand")
    record = {"run": {"group": group, "init": init}, "history": hist, "key": {"models": models}}
    return {**record, "config": {"target": target}} if target is not None else record


def test_a_stale_scratch_run_does_not_move_the_target():
    runs = {
        "small": _run("source", 3.0),
        "scratch-s0": _run("reference", 2.1),
        "scratch-s1": _run("reference", 1.9),
        "lemon-s0": _run("headline", 1.95, target=2.0),  # trained toward the mean of s0, s1
    }
    target = report.summarise(runs)["target"]
    assert target == pytest.approx(2.0)
    stale = {**runs, "scratch-s7": _run("reference", 0.5)}  # a seed of an older preset
    assert report.summarise(stale)["target"] == target
    other_models = copy.deepcopy(_run("reference", 0.5))
    other_models["key"]["models"]["large"]["hidden"] = 32
    assert report.summarise({**runs, "scratch-s2": other_models})["target"] == target
    unrecorded = {**runs, "lemon-s0": _run("headline", 1.95), "scratch-s2": other_models}
    assert report.summarise(unrecorded)["target"] == target  # another preset's: left out


def test_chunk_size_is_in_the_provenance(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    build("gpt2", dtype=torch.float32).save_pretrained(src)
    monkeypatch.setattr(lemonkit.engine.tensor, "CHUNK_ELEMENTS", 4096)
    assert main(["-q", "expand", str(src), str(out), "--hidden-size", "96", "--no-verify"]) == 0
    assert json.loads((out / "lemonkit.json").read_text())["chunk_elements"] == 4096


def test_every_data_form_table_round_trips():
    for table in tables.BUILT_IN:
        if not table.stages:
            assert table_from_data(json.loads(json.dumps(table_to_data(table)))) == table


def test_a_data_table_expands_a_model(registry, tmp_path, capsys):
    """GPT-2 declared as JSON, in place of the built-in table."""
    data = table_to_data(GPT2)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    src, out = tmp_path / "src", tmp_path / "out"
    build("gpt2", dtype=torch.float32).save_pretrained(src)
    tables.TABLES[:] = [t for t in tables.TABLES if t is not GPT2]  # only the file's table
    argv = ["--table", str(path), "-q", "expand", str(src), str(out), "--hidden-size", "96"]
    assert main(argv) == 0
    assert json.loads((out / "lemonkit.json").read_text())["verification"]["ok"]


TOML = """
model_types = ["tiny"]
classes = ["GPT2LMHeadModel"]
norm = "layernorm"
task = "causal_lm"
[config]
hidden = "n_embd"
layers = "n_layer"
heads = "n_head"
mlp = "n_inner"
norm_eps = ["layer_norm_epsilon"]
[[tensors]]
name = "transformer.wte.weight"
axes = [{}, { out = "hidden" }]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TOML.replace("{}", "null_axis"), "cannot be parsed"),
        (TOML.replace("[{}, ", "[{ out = 1 }, "), "a space is a name or a list of names"),
        (TOML.replace("[{}, ", "[{ sideways = 'hidden' }, "), "an axis is null or one of"),
        (TOML.replace("norm = ", "colour = 'red'\nnorm = "), "unknown key 'colour'"),
        (TOML.replace('"layernorm"', '"groupnorm"'), "norm 'groupnorm'"),
        (TOML.replace("GPT2LMHeadModel", "os.system"), "not a transformers class"),
        ('model_class = "os.system"\n' + TOML, "'model_class' cannot be declared as data"),
    ],
)
def test_bad_data_tables_are_refused_in_one_line(registry, tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    argv = ["--table", str(path), "list"]
    assert_contract(capsys, argv, message, None, None)


def test_toml_and_json_tables_agree(tmp_path):
    from lemonkit.tables.data import read_table

    text = TOML.replace("[{}, ", "[{ gamma = 'hidden' }, ")
    (tmp_path / "t.toml").write_text(text)
    table = read_table(tmp_path / "t.toml")
    (tmp_path / "t.json").write_text(json.dumps(table_to_data(table)))
    assert read_table(tmp_path / "t.json") == table
    assert table.tensors[0].axes[0] == lemonkit.tables.format.Gamma("hidden")


def test_plugin_help_says_it_executes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "EXECUTES the file" in text and "runs no code" in text


def test_table_file_is_not_executed(registry, tmp_path, capsys):
    path = tmp_path / "evil.json"
    marker = tmp_path / "ran"
    path.write_text(json.dumps({"model_types": [f"__import__('os').mknod('{marker}')"]}))
    assert_contract(capsys, ["--table", str(path), "list"], "missing key", None, None)
    assert not marker.exists() and Path(path).is_file()
