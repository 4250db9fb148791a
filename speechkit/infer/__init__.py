"""Inference: the VALL-E X pipeline (zero-shot / cross-lingual TTS, S2ST), voice prompts, text splitting."""
from speechkit.infer.pipeline import (
    SynthesisOptions,
    SynthesisRequest,
    SynthesisResult,
    VallexPipeline,
    dominant_language,
)
from speechkit.infer.pipeline_pack import assemble_pipeline_pack
from speechkit.infer.precision import PRECISIONS, apply_precision
from speechkit.infer.text_split import join_with_pauses, split_sentences
from speechkit.infer.voice_prompt import VoicePrompt

__all__ = [
    "PRECISIONS", "SynthesisOptions", "SynthesisRequest", "SynthesisResult", "VallexPipeline", "VoicePrompt",
    "apply_precision", "assemble_pipeline_pack", "dominant_language", "join_with_pauses", "split_sentences",
]
