"""Quiet the libraries tunesmith drives (transformers, huggingface_hub, bitsandbytes, kernels) so that a
command's output is tunesmith's own: every command that loads a model calls this first."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    # Batched tokenization uses every core (the data check of 100,000 chats is a third faster). tunesmith never
    # forks after tokenizing, and saying "true" outright silences the library's fork warning.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    warnings.filterwarnings("ignore", category=FutureWarning)
    # bitsandbytes (imported by peft when installed) warns on import that it cannot fetch an optional CPU
    # kernel from the hub; its own kernels work, and nothing here downloads
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # transformers >= 5.25 asks the `kernels` package for that kernel, which warns offline that it skips the
    # hub's publisher check: noise before tunesmith's own message on stderr, about nothing tunesmith loads
    logging.getLogger("kernels").setLevel(logging.ERROR)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
