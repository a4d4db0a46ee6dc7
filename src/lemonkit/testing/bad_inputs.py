"""The catalogue of bad inputs and what each one gets, as data.

Each :class:`BadInput` is a command a new user might type (a damaged folder, an
impossible target, a wrong file), and the words the one line ``lemonkit: error: ...``
must hold. ``tests/test_bad_inputs.py`` runs every case and checks the whole contract
(exit 2, one line, no traceback, no ``OUT``, no temporary folder, the source
byte-identical); the README's table is this module's output::

    python -m lemonkit.testing.bad_inputs            # print the table
    python -m lemonkit.testing.bad_inputs README.md  # rewrite it between the markers
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lemonkit.testing import damage as d

START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"
SHOWN_CHARS = 180


@dataclass(frozen=True)
class BadInput:
    """One bad input: ``argv`` with ``{src}``, ``{out}``, ``{dir}`` (the folder holding
    both) filled in, after ``damage(src, dir)`` changed a copy of a ``family`` model."""

    what: str
    argv: tuple[str, ...]
    expect: str
    damage: Callable[[Path, Path], None] | None = None
    family: str = "gpt2"
    tags: tuple[str, ...] = field(default=())


def _on_src(fn, *args, **kwargs) -> Callable[[Path, Path], None]:
    return lambda src, root: fn(src, *args, **kwargs)


def _write(name: str, text: str) -> Callable[[Path, Path], None]:
    return lambda src, root: (root / name).write_text(text)


def _mkdir(name: str) -> Callable[[Path, Path], None]:
    return lambda src, root: (root / name).mkdir()


def _pickle_only(src: Path, root: Path) -> None:
    (src / d.WEIGHTS).unlink()
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")


def _drop(name: str) -> Callable[[Path, Path], None]:
    return _on_src(d.edit_tensors, lambda t: t.pop(name))


def _add(name: str, tensor: torch.Tensor) -> Callable[[Path, Path], None]:
    return _on_src(d.edit_tensors, lambda t: t.update({name: tensor}))


def _index(weight_map) -> Callable[[Path, Path], None]:
    return _on_src(d.write_index, weight_map)


def _index_moved(src: Path, root: Path) -> None:
    """Two shards; the index puts a tensor of the first in the second."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(src / d.WEIGHTS)
    second = "model-00002-of-00002.safetensors"
    save_file({"transformer.wpe.weight": tensors.pop("transformer.wpe.weight")}, src / second)
    save_file(tensors, src / d.WEIGHTS)
    weight_map = {**d.index_all(src), "transformer.wpe.weight": second}
    d.write_index(src, {**weight_map, "transformer.wte.weight": second})


def _sentence_transformers(src: Path, root: Path) -> None:
    (src / "modules.json").write_text(
        '[{"type": "sentence_transformers.models.Dense", "path": "2"}]'
    )


E = ("expand", "{src}", "{out}")
W = (*E, "--hidden-size", "96")
H = "transformer.h.1.mlp.c_fc.weight"
CASES: tuple[BadInput, ...] = (
    # the folders
    BadInput("SRC does not exist", ("expand", "{dir}/nope", "{out}", "--num-layers", "3"),
             "is not a folder"),
    BadInput("SRC has no config.json", W, "has no config.json",
             _on_src(lambda s: (s / "config.json").unlink())),
    BadInput("OUT exists (no --force)", W, "already exists; pass --force", _mkdir("out")),
    BadInput("OUT is SRC", ("expand", "{src}", "{src}", "--hidden-size", "96", "--force"),
             "must not be the source folder"),
    BadInput("OUT inside SRC", ("expand", "{src}", "{src}/big", "--hidden-size", "96"),
             "must not be the source folder, inside it"),
    BadInput("OUT's parent does not exist", ("expand", "{src}", "{dir}/no/out", "--num-layers",
             "3"), "parent folder"),
    BadInput("OUT is a file (--force)", (*W, "--force"), "exists and is not a folder",
             _write("out", "a file")),
    # config.json
    BadInput("config.json is not JSON", W, "config.json cannot be read",
             _on_src(lambda s: (s / "config.json").write_text("{model_type: gpt2"))),
    BadInput("config.json lacks model_type", W, "config.json cannot be read",
             _on_src(d.edit_config, model_type=None)),
    BadInput("an unsupported model type", W, "'t5' is not supported; supported:",
             _on_src(d.edit_config, model_type="t5")),
    BadInput("config.json contradicts the weights", (*E, "--num-layers", "3"),
             "does not match the config",
             _on_src(d.edit_config, n_embd=128)),
    BadInput("a sentence-transformers module with weights", W,
             "sentence-transformers module 'Dense'", _sentence_transformers),
    # the weights
    BadInput("no weights at all", W, "has no model.safetensors",
             _on_src(lambda s: (s / d.WEIGHTS).unlink())),
    BadInput("a pickle checkpoint only", W, "lemonkit does not unpickle", _pickle_only),
    BadInput("a truncated model.safetensors", W, "corrupt or truncated", _on_src(d.truncate)),
    BadInput("a safetensors header cut short", W, "corrupt or truncated",
             _on_src(d.truncate, 0.001)),
    BadInput("a garbled safetensors header", W, "corrupt or truncated",
             _on_src(d.header_bytes, 9, b"\xff\xfe")),
    BadInput("a header length past the end", W, "corrupt or truncated",
             _on_src(d.header_bytes, 0, (1 << 40).to_bytes(8, "little"))),
    BadInput("a dtype lemonkit cannot read (complex)", W, "has dtype C64",
             _on_src(d.single_tensor_file, "C64", 4, 8)),
    BadInput("a missing tensor", W, f"missing tensor '{H}'", _drop(H)),
    BadInput("an unexpected tensor", W, "unexpected tensor 'transformer.h.0.adapter.weight'",
             _add("transformer.h.0.adapter.weight", torch.zeros(2))),
    BadInput("a tensor of a layer the config lacks", W, "the config has only 2 layers",
             _add("transformer.h.7.ln_1.weight", torch.ones(64))),
    BadInput("a tensor of the wrong shape", W, "does not match the config",
             _add("transformer.wpe.weight", torch.zeros(64, 48))),
    BadInput("NaN in a weight", W, "non-finite value(s)", _on_src(d.poison, float("nan"))),
    BadInput("infinity in a weight", W, "non-finite value(s)", _on_src(d.poison, float("inf"))),
    BadInput("float8 weights grown in width", W, "pass --dtype bfloat16",
             _on_src(d.to_dtype, torch.float8_e4m3fn)),
    BadInput("int8 weights grown in width", W, "grows integer tensors only by copying",
             _on_src(d.to_dtype, torch.int8)),
    # the shard index
    BadInput("an index that is not JSON", W, "not a valid shard index",
             _on_src(lambda s: (s / d.INDEX).write_text("{"))),
    BadInput("an index without weight_map", W, "not a valid shard index",
             _on_src(lambda s: (s / d.INDEX).write_text("{}"))),
    BadInput("an index naming a missing shard", W, "named in model.safetensors.index.json is "
             "missing", _index({"transformer.wte.weight": "model-00002-of-00002.safetensors"})),
    BadInput("an index pointing outside the folder", W, "(its weight_map)",
             _index({"transformer.wte.weight": "../model.safetensors"})),
    BadInput("an index that misplaces a tensor", W, "but it is not", _index_moved),
    # the targets
    BadInput("a smaller width", (*E, "--hidden-size", "32"), "smaller than source"),
    BadInput("fewer layers", (*E, "--num-layers", "1"), "lemonkit only grows models"),
    BadInput("a width that is not a multiple of head_dim", (*E, "--hidden-size", "72"),
             "not a multiple of head_dim"),
    BadInput("a head count that changes head_dim", (*W, "--num-heads", "8"), "changing head_dim"),
    BadInput("a target the config class refuses", (*E, "--hidden-size", "100", "--num-heads",
             "6"), "not valid for LlamaConfig", family="llama"),
    BadInput("a layer map out of order", (*E, "--layer-map", "1,0"), "in order"),
    BadInput("a layer map that contradicts --num-layers", (*E, "--num-layers", "6",
             "--layer-map", "0,1,1"), "the layer map has 3 entries"),
    BadInput("a lossy method without --allow-lossy", (*W, "--method", "aki"), "not lossless"),
    BadInput("an unreadable --max-shard-size", (*W, "--max-shard-size", "5X"),
             "cannot read size"),
    BadInput("a size that is not a number", (*E, "--hidden-size", "wide"),
             "invalid int value: 'wide'"),
    BadInput("an unknown option", (*W, "--colour", "red"), "unrecognized arguments"),
    BadInput("upcycle without --num-experts", ("upcycle", "{src}", "{out}", "--to", "mixtral",
             "--experts-per-token", "2"), "needs --num-experts", family="llama"),
    # plugins and tables
    BadInput("--plugin with a file that is not Python", ("--plugin", "{dir}/plugin.txt", *W),
             "not a Python file (.py)", _write("plugin.txt", "register()")),
    BadInput("--plugin with a missing file", ("--plugin", "{dir}/nope.py", *W),
             "does not exist"),
    BadInput("--plugin whose code fails", ("--plugin", "{dir}/bad.py", *W),
             "failed: ZeroDivisionError", _write("bad.py", "1 / 0\n")),
    BadInput("--table that is not JSON", ("--table", "{dir}/t.json", *W), "cannot be parsed",
             _write("t.json", "{")),
    BadInput("--table without classes", ("--table", "{dir}/t.json", *W),
             "missing key 'classes'", _write("t.json", '{"model_types": ["gpt2"]}')),
    # verify
    BadInput("verify with an edited lemonkit.json", ("verify", "{src}", "{dir}/fake"),
             "is not valid JSON", lambda src, root: _fake_output(src, root, "{")),
    BadInput("block-wise verification of a ResNet", ("verify", "{src}", "{src}",
             "--blockwise"), "grows per stage", family="resnet"),
)  # fmt: skip


def _fake_output(src: Path, root: Path, record: str) -> None:
    fake = Path(shutil.copytree(src, root / "fake"))
    (fake / "lemonkit.json").write_text(record)


def build_source(family: str, folder: Path) -> Path:
    """A small random model of ``family`` saved in ``folder`` (float32)."""
    from lemonkit.testing.zoo import build, resnet

    if family == "resnet":
        model = resnet(dtype=torch.float32)
    else:
        model = build(family, dtype=torch.float32)
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' progress bar
        model.save_pretrained(folder)
    return folder


def fill(argv: tuple[str, ...], src: Path, out: Path, root: Path) -> list[str]:
    return [a.format(src=src, out=out, dir=root) for a in argv]


@dataclass
class Outcome:
    """What a case did: exit status, stderr, and the contract's other clauses."""

    code: int
    err: str
    source_kept: bool  # SRC byte-identical
    out_kept: bool  # OUT as it was (absent, or a pre-existing one untouched)
    leftovers: list[str]  # hidden files of a run beside OUT


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_case(case: BadInput, root: Path, sources: dict[str, Path]) -> Outcome:
    """Run one case in ``root`` (a fresh folder) through the CLI, in this process."""
    from lemonkit.cli.main import main

    src = Path(shutil.copytree(sources[case.family], root / "src"))
    if case.damage:
        case.damage(src, root)
    src_before, out_before = snapshot(src), snapshot(root / "out")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(["-q", *fill(case.argv, src, root / "out", root)])
        except SystemExit as e:  # argparse
            code = e.code
    left = [p.name for p in root.iterdir() if ".lemonkit-" in p.name]
    return Outcome(
        code,
        err.getvalue(),
        snapshot(src) == src_before,
        snapshot(root / "out") == out_before,
        left,
    )


def shown(line: str, root: Path) -> str:
    """The line as the README shows it: paths as SRC, OUT, DIR; cut to SHOWN_CHARS."""
    text = line.removeprefix("lemonkit: error: ")
    if "; supported: " in text:  # grows with every family: not in the table
        text = text.split("; supported: ")[0] + "; supported: (every model type, listed)"
    for path, name in ((root / "src", "SRC"), (root / "out", "OUT"), (root, "DIR")):
        text = text.replace(str(path), name)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def run_all(workdir: Path) -> list[tuple[BadInput, Outcome, str]]:
    """Every case: (case, its outcome, the line as the README shows it)."""
    sources = {}
    for family in sorted({c.family for c in CASES}):
        sources[family] = build_source(family, workdir / "sources" / family)
    results = []
    for i, case in enumerate(CASES):
        root = workdir / f"case{i:02d}"
        root.mkdir()
        outcome = run_case(case, root, sources)
        lines = outcome.err.strip().splitlines()
        results.append((case, outcome, shown(lines[-1] if lines else "", root)))
    return results


def table(results) -> str:
    """The README's markdown table."""
    rows = ["| bad input | command | what lemonkit says (exit 2) |", "|---|---|---|"]
    for case, _, line in results:
        argv = " ".join(a.replace("{src}", "SRC").replace("{out}", "OUT").replace("{dir}", "DIR")
                        for a in case.argv)  # fmt: skip
        rows.append(f"| {case.what} | `lemonkit {argv}` | {line.replace('|', '/')} |")
    return "\n".join(rows)


def rewrite(readme: Path, text: str) -> None:
    """Put ``text`` between the markers of ``readme``."""
    body = readme.read_text()
    head, rest = body.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="lemonkit-bad-inputs-") as work:
        out = table(run_all(Path(work)))
    if len(sys.argv) > 1:
        rewrite(Path(sys.argv[1]), out)
    else:
        print(out)
