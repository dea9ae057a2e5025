"""The wav2lip family's options, as data (CLI flags and app forms are built from them).  Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from slimgui.core.options import option

FACE_FILTER = "Faces (*.mp4 *.mov *.mkv *.avi *.webm *.png *.jpg *.jpeg *.bmp);;All files (*)"
AUDIO_FILTER = "Speech (*.wav *.flac *.ogg *.mp3 *.m4a *.mp4);;All files (*)"
WEIGHT_MAX = 1e6


@dataclass
class LipSyncPreviewOptions:
    """A face video or still image + speech → a lip-synced MP4 with the sound (original | this model)."""

    face: str | None = option(None, label="face video or image", path="file", filter=FACE_FILTER,
                              none_label="the demo's face", help="the face to animate: a video (its frames loop when "
                              "the speech is longer) or a still image")
    audio: str | None = option(None, label="speech", path="file", filter=AUDIO_FILTER, record="audio",
                               none_label="the demo's held-out sentence",
                               help="the speech the lips follow (mixed to mono, resampled to 16 kHz)")
    face_box: str | None = option(None, label="face box", none_label="found by OpenCV's face detector", flag="--box",
                                  help="X,Y,W,H of the face in pixels (or 'full': the whole frame), instead of detecting it")
    max_seconds: float = option(20.0, label="max seconds", lo=0.2, hi=600.0, step=1.0,
                                help="use at most this much of the speech")


@dataclass
class TalkDataOptions:
    """Talking-face training data: a folder of videos with sound (or the demo's clips)."""

    face_box: str | None = option(None, label="face box", none_label="found by OpenCV's face detector",
                                  flag="--face-box", help="X,Y,W,H of the face in pixels in every video (or 'full'), instead of detecting it")


@dataclass
class DistillOptions:
    """Distillation from the original generator without an adversarial loss (the unified compression's healing)."""

    kd_out: float = option(1.0, label="pixel L1", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                           help="weight of the L1 distance to the original generator's frames")
    kd_feat: float = option(1.0, label="feature matching", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                            help="weight of the MSE between the kept channels of every stage's output (face encoder, "
                                 "audio embedding, decoder) and the original's")
    kd_sync: float = option(0.03, label="sync loss", lo=0.0, hi=WEIGHT_MAX, step=0.01,
                            help="weight of the SyncNet expert's loss (−log cosine of 5-frame windows and their audio; "
                                 "Wav2Lip's 0.03) when an expert is given (or the demo's)")
    kd_target: float = option(0.0, label="target L1", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                              help="weight of the L1 distance to the real frames (0: learn from the original only)")
    expert: str | None = option(None, label="SyncNet expert", path="file", none_label="the demo's expert, else none",
                                flag="--expert", help="a SyncNet_color checkpoint (lipsync_expert.pth) or a folder "
                                "holding one, for the sync loss")


@dataclass
class SyncEvalOptions:
    """Lip-sync (LSE-D / LSE-C with a SyncNet expert), PSNR / SSIM to the original, frames per second."""

    expert: str | None = option(None, label="SyncNet expert", path="file", none_label="the demo's expert",
                                flag="--expert", help="a SyncNet_color checkpoint (lipsync_expert.pth) or a folder "
                                "holding one")
    max_clips: int | None = option(None, label="max clips", lo=1, hi=100_000, none_label="all",
                                   help="evaluate at most this many videos of the folder")
    vshift: int = option(15, label="offsets", lo=0, hi=50, advanced=True,
                         help="audio offsets tried each way (frames), as syncnet_python's --vshift")


@dataclass
class Wav2LipOnnxOptions:
    """ONNX export of the generator (mel chunk + face → frame): FP32, dynamic INT8, or mixed precision."""

    w2l_mode: str = option("fp32", label="precision", choices=(("fp32", "FP32"), ("int8", "INT8 (dynamic)"),
                                                               ("mixed", "mixed INT8 / FP32")),
                           flag="--w2l-precision",
                           help="FP32; INT8 (every conv's weights INT8); or mixed: a per-layer sensitivity scan keeps "
                                "the most sensitive convs FP32 (FP16 on hardware that has it), the rest INT8")
    keep_float: int = option(4, label="layers kept float", lo=0, hi=1000,
                             help="mixed precision: how many of the most INT8-sensitive convs stay in float")
    keep_layers: list[str] | None = option(None, label="float convs", none_label="the scan's most sensitive",
                                           gui=False, help="mixed precision: the convs to keep in float, "
                                           "comma-separated (the report's layer names), instead of the scan's choice")
    check_frames: int = option(16, label="check frames", lo=1, hi=1024, advanced=True,
                               help="frames the export is compared with torch on")
