import logging

import pytest
import transformers

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
logging.getLogger("lemonkit").setLevel(logging.WARNING)


@pytest.fixture
def tmp_models(tmp_path):
    """A folder for saved models, cleaned up by pytest."""
    return tmp_path
