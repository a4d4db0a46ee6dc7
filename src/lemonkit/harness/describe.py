"""Experiments in words: the models of a preset and the machine a run used (RESULTS.md)."""

from __future__ import annotations


def where_it_ran(record: dict) -> str:
    """``"GPU: NVIDIA H200"``, ``"GPU"`` (older records) or ``"CPU, 2 threads"``."""
    if record.get("device") == "cuda":
        return f"GPU: {record['gpu']}" if record.get("gpu") else "GPU"
    threads = record.get("threads", "?")
    return f"CPU, {threads} thread{'' if threads == 1 else 's'}"


def describe_model(spec: dict) -> str:
    """A model spec in words, e.g. ``llama 192 x 4 (6 heads, 2 KV heads, MLP 512)``."""
    extras = [f"{spec['heads']} heads"]
    if "kv_heads" in spec:
        extras.append(f"{spec['kv_heads']} KV heads")
    extras.append(f"MLP {spec.get('intermediate', 4 * spec['hidden'])}")
    if "patch" in spec:
        extras.append(f"patch {spec['patch']}")
    return f"{spec['arch']} {spec['hidden']} x {spec['layers']} ({', '.join(extras)})"


def models_sentence(models: dict) -> str:
    """The small and large model of an experiment in one line.

    Example:
        >>> spec = {"arch": "gpt2", "hidden": 128, "layers": 2, "heads": 4}
        >>> models_sentence({"small": spec, "large": {**spec, "hidden": 192, "layers": 4}})[25:]
        'gpt2 128 x 2 (4 heads, MLP 512) -> gpt2 192 x 4 (4 heads, MLP 768).'
    """
    return (
        f"Models (width x layers): {describe_model(models['small'])} -> "
        f"{describe_model(models['large'])}."
    )
