"""Stage 5 of the walk: is the expanded model the same function? Measured, not assumed.

``compare`` (:func:`lemonkit.verify`: two models, random inputs, float64 with the
float32 upcasts removed and float32 with the stock code), ``blockwise`` (two folders,
one source block at a time, bounded memory) and ``folders`` (which of the two a pair of
folders gets, and the tolerance ``lemonkit.json`` records).
"""
