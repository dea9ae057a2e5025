"""The voice family's options, as data (the CLI builds its flags and the app its forms from these schemas)."""

from __future__ import annotations

from dataclasses import dataclass

from slimgui.core.options import option

AUDIO_FILTER = "Audio (*.wav *.flac *.ogg);;All files (*)"
WEIGHT_MAX = 1e6


@dataclass
class ConvertPreviewOptions:
    """A source utterance converted by the model: waveform, spectrogram, play/stop, save as WAV."""

    audio: str | None = option(None, label="source audio", path="file", filter=AUDIO_FILTER, record="audio",
                               none_label="the demo's own utterance",
                               help="the speech to convert (WAV/FLAC/OGG; mixed to mono, resampled to 16 kHz)")
    utterance: int = option(0, label="demo utterance", lo=0, hi=10_000,
                            help="which of the demo's held-out sentences to convert when no audio is given")
    seed: int = option(0, label="seed", lo=0, hi=2**31 - 1, advanced=True,
                       help="SpeechT5's decoder pre-net keeps dropout at inference: the seed fixes it")
    vocoder: str | None = option(None, label="vocoder folder", path="folder", none_label="beside the model, else "
                                 "Griffin-Lim", advanced=True, help="a SpeechT5HifiGan folder turning mels into sound")
    text: str | None = option(None, label="text (text-to-speech models)", none_label="the demo's sentence",
                              advanced=True, help="what a SpeechT5ForTextToSpeech model says")


@dataclass
class VoiceEvalOptions:
    """MCD and F0 against the target voice, content (CER of the demo's recogniser) and real-time factor."""

    utterances: int = option(8, label="utterances", lo=1, hi=10_000,
                             help="held-out parallel utterances to convert and measure")
    f0: bool = option(True, label="F0 measures", negate="--no-f0",
                      help="F0 RMSE and correlation (pYIN; the slowest part)")
    seed: int = option(0, label="seed", lo=0, hi=2**31 - 1, advanced=True, help="the decoder pre-net's dropout seed")


@dataclass
class VoiceDataOptions:
    """How the parallel utterances are used for retraining (the family's training-data options)."""

    max_utterances: int | None = option(None, label="max utterances", lo=2, hi=1_000_000, none_label="all",
                                        help="use at most this many training utterances (spread evenly)")


@dataclass
class FinetuneOptions:
    """Fine-tuning on parallel utterances: teacher-forced mel L1 (before and after the post-net) + stop-flag BCE."""

    stop_weight: float = option(0.5, label="stop-flag weight", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                                help="weight of the stop flag's binary cross-entropy")


@dataclass
class DistillOptions:
    """Distillation from the original: L1 to its mel outputs + MSE of matching decoder blocks' hidden states + the
    target voice's mels."""

    kd_mel: float = option(1.0, label="teacher mels", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                           help="weight of the L1 between the student's and the original's mel outputs")
    kd_hidden: float = option(1.0, label="decoder hidden states", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                              aliases=("--lambda-feat",),
                              help="weight of the MSE between the hidden states of matching (kept) decoder blocks")
    kd_target: float = option(0.5, label="target mels", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-task",),
                              help="weight of the L1 to the target voice's mels (the parallel data)")


@dataclass
class MultitaskOptions:
    """The paper's multitask recipe: the VC loss plus a TTS loss through the shared encoder body and decoder."""

    tts_weight: float = option(1.0, label="TTS weight", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                               help="weight of the text-to-speech loss (0: VC only)")


@dataclass
class VoiceBenchOptions:
    seconds: float = option(2.0, label="seconds of audio", lo=0.1, hi=60.0, step=0.5,
                            help="length of the (random) waveform each timed conversion takes")
