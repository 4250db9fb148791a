"""One small abstract interface per component kind: the contracts, with tensor shapes.

Interfaces are plain ABCs (no torch import here, so listing components stays cheap); a model
that is also an ``nn.Module`` subclasses both.
"""
from speechkit.interfaces.base import Component, Trainable
from speechkit.interfaces.codec import Codec
from speechkit.interfaces.frontend import Frontend, Phone, PhoneSequence
from speechkit.interfaces.lm import ARLanguageModel, NARLanguageModel
from speechkit.interfaces.scorer import Scorer, ScoreItem
from speechkit.interfaces.st import STFrontend
from speechkit.interfaces.vocoder import Vocoder

__all__ = [
    "ARLanguageModel",
    "Codec",
    "Component",
    "Frontend",
    "NARLanguageModel",
    "Phone",
    "PhoneSequence",
    "STFrontend",
    "ScoreItem",
    "Scorer",
    "Trainable",
    "Vocoder",
]
