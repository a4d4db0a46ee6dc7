"""Training an expanded model: the LEMON learning-rate schedule (``schedule``), the
Hugging Face ``Trainer`` with that schedule (``trainer``, imported lazily by
``lemonkit.LemonTrainer``), and the knowledge-inheritance baseline's loss (``ki``).
"""
