"""Class prompts and frozen text encoders."""
