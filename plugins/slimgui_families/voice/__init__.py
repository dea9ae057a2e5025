"""SlimGUI's voice family: SpeechT5 voice converters (and the text-to-speech models that share their encoder body and
decoder) pruned by encoder and decoder blocks into physically smaller models that ``from_pretrained`` loads back.

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry: :mod:`.probe` (what
opens), :mod:`.adapter` (graph, plan, save, calibration, benchmark), :mod:`.audio` (sound files, mels, Griffin-Lim,
MCD, F0), :mod:`.speech` (teacher-forced passes, losses, conversion, the recogniser), :mod:`.data` and :mod:`.demo`
(the espeak-ng parallel speech and the demo converter), :mod:`.criteria`, :mod:`.training`, :mod:`.evaluate`,
:mod:`.preview`; options in :mod:`.options`.
"""

from slimgui.core.metrics import Metric
from slimgui.core.plugins import (
    AdapterSpec,
    CriterionSpec,
    DataSpec,
    DemoSpec,
    EvaluatorSpec,
    MethodSpec,
    Plugin,
    PreviewerSpec,
)

ME = "slimgui_families.voice"
CLIPS = DataSpec(kind="folder", label="parallel speech", required=False,
                 help="a folder of parallel clips (sentences.json, neutral/NNN.ogg, excited/NNN.ogg); the demo brings "
                      "its own")

plugin = Plugin(
    name="voice",
    version="1",
    description="Voice conversion (SpeechT5 speech-to-speech, with its text-to-speech sibling): encoder and decoder "
                "blocks",
    adapters=[
        AdapterSpec("speecht5", "voice", f"{ME}.adapter:VoiceAdapter", f"{ME}.probe:match",
                    "transformers SpeechT5ForSpeechToSpeech / SpeechT5ForTextToSpeech folders (a SpeechT5HifiGan "
                    "vocoder beside them is used, else Griffin-Lim)",
                    capabilities=("calibration", "default-data", "bench"), items="seconds of audio", unit_word="block",
                    layout="stack", native="transformers SpeechT5 folder", data=CLIPS, default_criterion="mel-change",
                    default_criterion_no_data="magnitude", file_kinds=("config.json", "*.safetensors"),
                    train_options=f"{ME}.options:VoiceDataOptions", bench_options=f"{ME}.options:VoiceBenchOptions",
                    default_method="kd"),
    ],
    criteria=[
        CriterionSpec("mel-change", f"{ME}.criteria:MelChange",
                      "mean |log-mel change| of the converter's output with the block removed, on calibration "
                      "utterances (teacher-forced)", families=("voice",), needs_data=True, needs=("calibration",)),
        CriterionSpec("bi", f"{ME}.criteria:BlockInfluence",
                      "block influence (ShortGPT's BI): mean 1 - cos(h_in, h_out) of each encoder/decoder block",
                      families=("voice",), needs_data=True, needs=("calibration",)),
    ],
    methods=[
        MethodSpec("kd", f"{ME}.training:build_kd", label="Distillation", families=("voice",),
                   description="The slimmed converter learns from the original: L1 to its mels, MSE of matching "
                               "decoder blocks' hidden states, and L1 to the target voice.",
                   options=f"{ME}.options:DistillOptions", default_lr=5e-4, teacher="original"),
        MethodSpec("finetune", f"{ME}.training:build_finetune", label="Fine-tune", families=("voice",),
                   description="Every weight trains on parallel utterances (teacher-forced mel L1 + stop flag).",
                   options=f"{ME}.options:FinetuneOptions", default_lr=5e-4),
        MethodSpec("multitask", f"{ME}.training:build_multitask", label="Multitask (VC + TTS)", families=("voice",),
                   description="The paper's recipe: the VC loss plus a text-to-speech loss through the shared encoder "
                               "body and decoder (the text pre-net beside the model), weighted by --tts-weight.",
                   options=f"{ME}.options:MultitaskOptions", default_lr=5e-4),
    ],
    evaluators=[
        EvaluatorSpec("voice-quality", f"{ME}.evaluate:quality",
                      "MCD and F0 to the target voice, character error rate of the demo's recogniser, real-time "
                      "factor, on held-out parallel utterances", families=("voice",),
                      options=f"{ME}.options:VoiceEvalOptions",
                      metrics=(Metric("mcd", "MCD to target", unit="dB", better="lower", fmt="{:.2f}", headline=True),
                               Metric("mcd_source", "MCD source→target", unit="dB", fmt="{:.2f}"),
                               Metric("f0_rmse", "F0 RMSE", unit="Hz", better="lower", fmt="{:.1f}"),
                               Metric("f0_corr", "F0 correlation", better="higher", fmt="{:.2f}"),
                               Metric("cer", "Character error rate", better="lower", fmt="{:.1%}"),
                               Metric("cer_target", "CER on real target", fmt="{:.1%}"),
                               Metric("rtf", "Real-time factor", better="lower", fmt="{:.3f}"),
                               Metric("utterances", "Utterances", fmt="{:,}")),
                      data=DataSpec(kind="folder", label="parallel speech", required=False,
                                    help="parallel clips (the demo's layout); none: the demo's held-out sentences")),
    ],
    previewers=[
        PreviewerSpec("convert", f"{ME}.preview:convert_preview", "audio",
                      "a source utterance converted by the model (waveform, spectrogram, play, save as WAV)",
                      families=("voice",), options=f"{ME}.options:ConvertPreviewOptions", label="Converted speech"),
    ],
    demos=[DemoSpec("voice", f"{ME}.demo:ensure_demo",
                    "4+4-block SpeechT5 converter (width 96) trained on espeak-ng parallel speech, neutral → excited")],
)
