"""The model card of an output folder: ``OUT/README.md``.

YAML front matter for the Hub (``base_model`` where the source is a Hub repo id: the Hub
reads it as one, so a local path is left out; ``library_name``, ``tags``, and the license
carried over from the source's own card when it has one), then the growth
(sizes before -> after, parameters, method, depth rule, seed, layer map), the
verification result and how to train the model with ``LemonTrainer``. The source's card
is read for its license only: it describes another model and is never copied.

Example::

    write_model_card(out, source, plan, report, n_params=(135e6, 360e6))
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from lemonkit.io.hub import Source
from lemonkit.plan import ExpansionPlan

log = logging.getLogger(__name__)

CARD_FILE = "README.md"
TAGS = ["lemonkit", "model-expansion"]
LICENSE_KEYS = ("license", "license_name", "license_link")  # "other" licenses name themselves


def front_matter(text: str) -> dict:
    """The YAML block between the leading ``---`` lines of a card ({} if none or invalid)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
        data = yaml.safe_load("\n".join(lines[1:end]))
    except (StopIteration, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def source_license(folder: Path) -> dict:
    """The license keys of the source's card, if it has a card that names one."""
    card = folder / CARD_FILE
    if not card.is_file():
        return {}
    meta = front_matter(card.read_text(errors="replace"))
    return {k: meta[k] for k in LICENSE_KEYS if meta.get(k)}


def card_text(
    source: Source, plan: ExpansionPlan, report, n_params: tuple[int, int], title: str
) -> str:
    """The whole card: front matter, growth, verification, training."""
    meta = {
        # the Hub links base_model to a repo page: a Hub id only, never a local path
        **({"base_model": source.repo_id} if source.repo_id else {}),
        "library_name": "transformers",
        **source_license(source.path),
        "tags": TAGS,
    }
    head = yaml.safe_dump(meta, sort_keys=False, default_flow_style=False).strip()
    sections = [
        f"---\n{head}\n---",
        f"# {title}",
        _intro(source, plan),
        "## Growth\n\n" + _growth(plan, n_params),
        "## Verification\n\n" + _verification(plan, report),
        "## Train it\n\n" + _training(_model_class(plan)),
    ]
    return "\n\n".join(sections) + "\n"


def write_model_card(
    folder: Path, source: Source, plan: ExpansionPlan, report, n_params: tuple[int, int]
) -> None:
    """Write ``folder/README.md`` (replacing a copy of the source's card, if any)."""
    title = Path(source.name).name + "-lemonkit"
    (folder / CARD_FILE).write_text(card_text(source, plan, report, n_params, title))


def _intro(source: Source, plan: ExpansionPlan) -> str:
    base = (
        f"[{source.name}](https://huggingface.co/{source.name})"
        if source.repo_id
        else (f"`{source.name}`")
    )
    at = f" (commit `{source.commit}`)" if source.commit else ""
    what = "upcycled and grown" if plan.upcycle else "grown"
    return (
        f"A `{plan.model_type}` model {what} from {base}{at} by "
        "lemonkit (lossless model expansion, LEMON, ICLR 2024): the "
        "larger model computes the same function as its source, and trains from there."
    )


def _growth(plan: ExpansionPlan, n_params: tuple[int, int]) -> str:
    src, tgt = plan.source.given(), plan.target.given()
    rows = ["| | source | expanded |", "|---|---|---|"]
    rows.append(f"| parameters | {n_params[0]:,} | {n_params[1]:,} |")
    rows += [f"| {k} | {_size(src.get(k))} | {_size(v)} |" for k, v in tgt.items()]
    facts = [
        f"- method: `{plan.method}` ({plan.width_method.note})",
        f"- depth rule: `{plan.depth}` ({plan.depth_rule.note})",
        f"- seed: {plan.seed}",
        f"- layer map (target <- source): {list(plan.layer_map)}",
    ]
    if plan.upcycle:
        up = plan.upcycle
        facts.append(
            f"- upcycled to `{up['class']}`: {up['num_experts']} experts, "
            f"{up['experts_per_token']} per token"
        )
    if plan.lossy_reason:
        facts.append(f"- lossy by request: {plan.lossy_reason}")
    return "\n".join(rows) + "\n\n" + "\n".join(facts) + "\n\nEvery choice is in `lemonkit.json`."


def _size(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def _verification(plan: ExpansionPlan, report) -> str:
    """The certificate in words: its level, the parts checked, the end-to-end result."""
    if report is None:
        return "Not run (`--no-verify`); run `lemonkit verify SOURCE THIS_FOLDER`."
    verdict = "Lossless" if report.ok else "**Not lossless**"
    lines = [f"{verdict} (`lemonkit verify` level `{report.level}`, recorded in `lemonkit.json`)."]
    parts = report.parts
    if parts is not None:
        worst = parts["worst"]
        lines.append(
            f"- parts: each of the {parts['parts']} stored tensors against its source "
            f"({parts['probed']} on {parts['probes_per_part']} {parts['dtype']} random "
            f"probes, {parts['recomputed']} recomputed, {parts.get('copied', 0)} copies "
            f"compared bytewise, {parts.get('checksummed', 0)} against the CRC-32 of the "
            "engine's output)" + (f"; worst relative error {worst['error']:.1e}" if worst else "")
        )
    e2e = report.end_to_end
    if e2e is not None:
        lines.append(
            f"- end to end ({report.end_to_end_kind}), the whole model on random inputs: "
            f"relative output error {e2e.rel_error_fp64:.3e} in float64 (tolerance "
            f"{e2e.tol_fp64:.0e}) and {e2e.rel_error_fp32:.3e} in float32 (tolerance "
            f"{e2e.tol_fp32:.1e})"
        )
    else:
        lines.append(f"- end to end: {report.end_to_end_kind}")
    return "\n".join(lines)


def _model_class(plan: ExpansionPlan) -> str:
    """The class the target config names (``AutoModel`` when it names none)."""
    names = getattr(plan.target_config, "architectures", None)
    ok = isinstance(names, list | tuple) and names and isinstance(names[0], str)
    return names[0] if ok else "AutoModel"  # an edited config.json may hold anything


def _training(model_class: str) -> str:
    return (
        "The same peak learning rate as from scratch, with the decay ending early (LEMON's "
        "schedule):\n\n"
        "```python\n"
        f"from transformers import {model_class}, TrainingArguments\n"
        "from lemonkit import LemonArguments, LemonTrainer\n\n"
        f'model = {model_class}.from_pretrained("THIS_FOLDER")\n'
        'args = TrainingArguments(output_dir="run", max_steps=100_000, warmup_steps=2_000,\n'
        "                         learning_rate=6e-4)\n"
        "trainer = LemonTrainer(model=model, args=args, train_dataset=train_set,\n"
        "                       lemon_args=LemonArguments(lemon_decay_ratio=0.6))\n"
        "trainer.train()\n"
        "```"
    )
