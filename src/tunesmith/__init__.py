"""tunesmith: fine-tune a pretrained transformer for your own task, then keep it good in production."""

__version__ = "0.1.0"
