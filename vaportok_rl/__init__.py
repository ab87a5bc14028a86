"""vaportok-rl: GRPO fine-tuning of taildrop policies for adaptive 1D video tokenizers."""

__version__ = "0.1.0"
