"""Stage 4 of the walk: folders in and out. ``checkpoint`` (lazy, validated reading),
``writer`` (streaming safetensors shards and index), ``files`` (config, copied files,
provenance), ``load`` (a folder -> a model) and ``folder`` (the atomic ``expand_folder``
job: plan, expand, write, verify, publish).
"""
