"""SlimGUI's wav2lip family: Wav2Lip talking-face generators compressed the unified way ("A Unified Compression
Framework for Efficient Speech-Driven Talking-Face Generation"): residual blocks removed, channel widths cut (the
``nota`` preset turns the official generator into NotaWav2Lip(4, 8, 8)), healed by distillation without an
adversarial loss, exported with INT8 where the per-layer scan allows.

This module is the plugin manifest only; it imports nothing heavy.  The code: :mod:`.modeling` (generator and SyncNet
expert, Rudrabha/Wav2Lip's and nota-wav2lip's keys), :mod:`.probe` (what opens, from keys and shapes), :mod:`.adapter`
(graph, plans, save), :mod:`.pruning` (channel groups, residual removal), :mod:`.audio` (Wav2Lip's mel front end),
:mod:`.face` (Haar-cascade face tracking), :mod:`.data`, :mod:`.sync` (LSE-D / LSE-C), :mod:`.preview`,
:mod:`.criteria`, :mod:`.training`, :mod:`.evaluate`, :mod:`.export` and :mod:`.demo`; options in :mod:`.options`.
"""

from slimgui.core.metrics import Metric
from slimgui.core.plugins import (
    AdapterSpec,
    CriterionSpec,
    DataSpec,
    DemoSpec,
    EvaluatorSpec,
    ExporterSpec,
    MethodSpec,
    Plugin,
    PreviewerSpec,
)

ME = "slimgui_families.wav2lip"
VIDEOS = DataSpec(kind="folder", label="talking-face videos", required=False,
                  help="a folder of videos of one speaking face each, with their sound (MP4, MOV, MKV, AVI, WebM); "
                       "the demo brings its own clips")

plugin = Plugin(
    name="wav2lip",
    version="1",
    description="Wav2Lip talking-face generators: residual-block removal, channel widths (nota preset), "
                "distillation without adversarial loss, lip-synced video previews",
    adapters=[
        AdapterSpec("wav2lip", "wav2lip", f"{ME}.adapter:Wav2LipAdapter", f"{ME}.probe:match",
                    "Wav2Lip generators: the official checkpoints (wav2lip.pth, wav2lip_gan.pth), nota-wav2lip's, "
                    "safetensors of either, and SlimGUI's slimmed ones",
                    capabilities=("calibration", "default-data", "presets", "width", "bench", "abconv"), items="faces",
                    unit_word="block", layout="u",
                    native="wav2lip.pth ({state_dict}) + .safetensors (+ nota_wav2lip.pth, slimgui_wav2lip.json)",
                    data=VIDEOS, default_criterion="sensitivity-scan", default_criterion_no_data="filter-magnitude",
                    default_method="kd", file_kinds=("wav2lip*.pth", "*.pth", "*.safetensors"),
                    train_options=f"{ME}.options:TalkDataOptions"),
    ],
    criteria=[
        CriterionSpec("sensitivity-scan", f"{ME}.criteria:Sensitivity",
                      "each residual block removed alone and each part's width cut alone by every eighth; score = "
                      "mean |G'(x) − G(x)| of the generated frames on calibration frames",
                      families=("wav2lip",), needs_data=True, needs=("calibration",)),
        CriterionSpec("filter-magnitude", f"{ME}.criteria:FilterMagnitude",
                      "no data: mean |w|·|γ| of the filters a unit removes (per filter, divided by the fan-in)",
                      families=("wav2lip",)),
    ],
    methods=[
        MethodSpec("kd", f"{ME}.training:build_kd", label="Distillation", families=("wav2lip",),
                   description="The slimmed generator learns from the original without an adversarial loss: pixel "
                               "L1 to its frames, feature matching of every stage, and a SyncNet expert's sync loss "
                               "when one is given.",
                   options=f"{ME}.options:DistillOptions", default_lr=1e-3, teacher="original"),
    ],
    evaluators=[
        EvaluatorSpec("lipsync", f"{ME}.evaluate:lipsync_quality",
                      "LSE-D / LSE-C with a SyncNet expert on the videos' own audio, PSNR / SSIM of the frames to the "
                      "original generator's, and frames per second", families=("wav2lip",),
                      options=f"{ME}.options:SyncEvalOptions",
                      metrics=(Metric("lse_d", "LSE-D", better="lower", fmt="{:.3f}", headline=True),
                               Metric("lse_c", "LSE-C", better="higher", fmt="{:.3f}"),
                               Metric("sync_distance", "Sync distance (offset 0)", better="lower", fmt="{:.3f}"),
                               Metric("psnr_to_original", "PSNR to original", unit="dB", better="higher",
                                      fmt="{:.2f}"),
                               Metric("ssim_to_original", "SSIM to original", better="higher", fmt="{:.4f}"),
                               Metric("frames_per_second", "Frames per second", unit="frames/s", better="higher", fmt="{:.1f}"),
                               Metric("clips", "Clips", fmt="{:,}")),
                      data=VIDEOS),
    ],
    previewers=[
        PreviewerSpec("lipsync", f"{ME}.preview:lipsync_preview", "video",
                      "a face video or still image + speech → a lip-synced MP4 with the sound; the original "
                      "generator's and this one's side by side", families=("wav2lip",),
                      options=f"{ME}.options:LipSyncPreviewOptions", label="Lip-synced video"),
    ],
    exporters=[
        ExporterSpec("wav2lip-onnx", f"{ME}.export:export_onnx", label="ONNX (Wav2Lip generator)",
                     description="an ONNX file of the generator (mel chunk + face → frame): FP32, INT8, or mixed "
                                 "(the most INT8-sensitive convs kept in float, by a per-layer scan)",
                     families=("wav2lip",), options=f"{ME}.options:Wav2LipOnnxOptions", output="file",
                     suffix=".w2l.onnx", runner=f"{ME}.export:bench_runner", layers_option="keep_layers",
                     metrics=(Metric("max_abs_diff", "Max abs diff", better="lower", fmt="{:.3g}"),
                              Metric("psnr_to_torch", "PSNR to torch", unit="dB", better="higher", fmt="{:.1f}"),
                              Metric("int8_layers", "INT8 convs", fmt="{:,}"),
                              Metric("bytes", "File size", unit="bytes", fmt="{:,}"))),
    ],
    demos=[DemoSpec("wav2lip", f"{ME}.demo:ensure_demo",
                    "Wav2Lip generator (official layout, widths 4/8/4) and a SyncNet expert trained on a drawn face "
                    "speaking espeak-ng sentences")],
)
