"""The frozen tokenizer side: the FrozenTokenizer protocol, the built-in tokenizer, its prior and head."""

from vaportok_rl.tokenizer.default import load_default_tokenizer, load_tokenizer, load_tokenizer_spec, save_tokenizer
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead
from vaportok_rl.tokenizer.model import Tokenizer, TokenizerConfig
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer, keep_mask, prior_accuracy

__all__ = [
    "Encoded",
    "FrozenTokenizer",
    "HeadConfig",
    "TaildropHead",
    "Tokenizer",
    "TokenizerConfig",
    "keep_mask",
    "load_default_tokenizer",
    "load_tokenizer",
    "load_tokenizer_spec",
    "prior_accuracy",
    "save_tokenizer",
]
