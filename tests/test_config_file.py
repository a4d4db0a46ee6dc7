"""``--config`` / ``--save-config``: a file gives every option, flags override it, and the
config recorded in lemonkit.json replays a run byte for byte."""

import json

import pytest
import torch
import yaml

from lemonkit.cli.main import main
from lemonkit.testing.zoo import build


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "small"
    build("llama", dtype=torch.float32).save_pretrained(path)
    (path / "tokenizer.json").write_text("{}")
    return path


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_config_file_gives_the_options_and_flags_override_it(src, tmp_path):
    config = tmp_path / "grow.yaml"
    config.write_text(
        f"src: {src}\nout: {tmp_path / 'a'}\nhidden-size: 96\nnum_layers: 3\n"
        "layer_map: [0, 1, 1]\nseed: 3\nno_verify: true\n"
    )
    assert main(["-q", "expand", "--config", str(config)]) == 0
    flags = ["--hidden-size", "96", "--layer-map", "0,1,1", "--seed", "3", "--no-verify"]
    assert main(["-q", "expand", str(src), str(tmp_path / "b"), *flags]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a["model.safetensors"] == b["model.safetensors"]
    # a flag wins over the file, positionals too
    assert main(["-q", "expand", "--config", str(config), str(src), str(tmp_path / "c")]) == 0
    argv = ["-q", "expand", "--config", str(config), str(src), str(tmp_path / "d")]
    assert main([*argv, "--seed", "4"]) == 0
    c, d = _files(tmp_path / "c"), _files(tmp_path / "d")
    assert c["model.safetensors"] == a["model.safetensors"] != d["model.safetensors"]
    assert json.loads(d["lemonkit.json"])["plan"]["seed"] == 4


def test_save_config_then_replay_is_byte_identical(src, tmp_path):
    saved = tmp_path / "used.yaml"
    out = tmp_path / "first"
    argv = ["-q", "expand", str(src), str(out), "--hidden-size", "128", "--num-layers", "4"]
    assert main([*argv, "--method", "net2net", "--seed", "5", "--save-config", str(saved)]) == 0
    values = yaml.safe_load(saved.read_text())
    assert values["hidden_size"] == 128 and values["method"] == "net2net"
    assert {"src", "out", "max_shard_size", "dtype", "allow_lossy", "no_verify"} <= set(values)
    # replay twice: from the saved file and from the output's lemonkit.json
    again = tmp_path / "again"
    assert main(["-q", "expand", "--config", str(saved), str(src), str(again)]) == 0
    replay = tmp_path / "replay"
    record = str(out / "lemonkit.json")
    assert main(["-q", "expand", "--config", record, str(src), str(replay)]) == 0
    first = _files(out)
    for folder in (again, replay):
        files = _files(folder)
        assert files.keys() == first.keys()
        for name in files.keys() - {"lemonkit.json"}:
            assert files[name] == first[name], name
        record, original = json.loads(files["lemonkit.json"]), json.loads(first["lemonkit.json"])
        assert record["plan"] == original["plan"]
        run_only = ("seconds", "peak_rss")  # the run's time and memory, not its result
        assert {k: v for k, v in record["verification"].items() if k not in run_only} == {
            k: v for k, v in original["verification"].items() if k not in run_only
        }
        assert {**record["config"], "out": None} == {**original["config"], "out": None}


def test_plan_and_upcycle_take_config_files(src, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"src": str(src), "hidden_size": 96}))
    saved = tmp_path / "plan-saved.json"
    assert main(["plan", "--config", str(plan), "--seed", "2", "--save-config", str(saved)]) == 0
    assert "hidden_size 64->96" in capsys.readouterr().out
    values = json.loads(saved.read_text())
    assert values["src"] == str(src) and values["hidden_size"] == 96 and values["seed"] == 2
    assert "out" not in values  # plan writes nothing
    up = tmp_path / "up.yaml"
    up.write_text(f"src: {src}\nto: mixtral\nnum_experts: 4\nexperts_per_token: 2\n")
    out = tmp_path / "moe"
    assert main(["-q", "upcycle", "--config", str(up), str(src), str(out), "--no-verify"]) == 0
    assert json.loads((out / "config.json").read_text())["num_local_experts"] == 4


@pytest.mark.parametrize(
    "text, words",
    [
        ("hidden_size: 96\nhiden_size: 96\n", "unknown key 'hiden_size'"),
        ("method: lemonade\n", "method must be one of"),
        ("allow_lossy: 3\n", "allow_lossy must be true or false"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("a: [\n", "not valid YAML"),
        ("num_layers: 3.0\n", "num_layers: invalid value 3.0"),  # was a traceback
        ("seed: [1, 2]\n", "seed: invalid value [1, 2]"),  # was taken as a seed
        ("hidden_size: abc\n", "hidden_size: invalid value"),  # was argparse's usage
    ],
)
def test_bad_config_files_are_one_line(src, tmp_path, capsys, text, words):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    assert main(["expand", "--config", str(config), str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_paths_and_files_are_one_line(src, tmp_path, capsys):
    config = tmp_path / "grow.yaml"
    config.write_text("hidden_size: 96\n")
    assert main(["expand", "--config", str(config), str(src)]) == 2
    assert "expand needs OUT" in capsys.readouterr().err
    assert main(["expand", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
