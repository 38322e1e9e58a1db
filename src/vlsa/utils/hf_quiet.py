"""Keep Hugging Face libraries' own progress bars off vlsa's output.

transformers 5 draws a "Loading weights" bar on stderr for every `from_pretrained` (and
sentence-transformers through it). vlsa loads small local models in a second and shows its own
progress; the extra bar broke the one-line error contract (a failing command printed it before
its error) and cluttered logs. Called before each load; idempotent.
"""

from __future__ import annotations


def quiet_hf_loading() -> None:
    """Turn off transformers' and huggingface_hub's progress bars for this process."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:  # an older hub without the switch: it draws no loading bar either
        return
    disable_progress_bars()
