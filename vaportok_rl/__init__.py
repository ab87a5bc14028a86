"""vaportok-rl: GRPO fine-tuning of taildrop policies for adaptive 1D video tokenizers."""

from vaportok_rl.tokenizer import FrozenTokenizer, TaildropHead, load_default_tokenizer, load_tokenizer

__version__ = "0.1.0"
__all__ = ["FrozenTokenizer", "TaildropHead", "load_default_tokenizer", "load_tokenizer"]
