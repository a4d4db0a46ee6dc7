"""Testing helpers: small random models of every supported architecture (``zoo``) and
the lossless error matrix over them (``error_table``).

They serve the test suite, ``make demo`` and the README's error table, and you can use
them to check a table of your own: build a random model, expand it, ``lemonkit.verify``.
Nothing here is imported by ``import lemonkit``.
"""
