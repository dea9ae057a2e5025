"""The built-in demo: a Wav2Lip generator (the real architecture with every residual block, base widths 4/8/4 instead
of 16/32/32) and a SyncNet-style lip-sync expert, trained on a talking face this script makes itself.  Reproducible
with::

    nice -n 10 python -m slimgui_families.wav2lip.demo --out resources/demo/wav2lip     # a few minutes on 2 CPU cores

Data: 24 short sentences of the voice demo's grammar spoken by espeak-ng (two voices, alternating; 16 kHz FLAC
clips shipped in ``clips/`` so machines without espeak-ng work, regenerated with it otherwise), and a drawn face
(OpenCV ellipses: skin, hair, eyes, brows, nose, lips; skin, hair and background colours and the head's place vary
per clip) whose mouth opening at video frame i (25 fps) follows the speech: the RMS energy of the audio from the
frame's time on (80 ms), divided by the clip's 95th percentile, clipped to [0, 1] and smoothed over 3 frames.  The
last 4 clips are held out (evaluation, previews, tests).

Training, as Wav2Lip's: the generator sees the frame with its lower half masked plus a reference frame of the same
clip (another mouth opening) and the frame's mel chunk, and learns the frame (L1; no discriminator, no sync loss).
The expert (SyncNet_color's layout, no residual blocks, widths 4) learns, on 5-frame windows of lower halves and
mel chunks, the cosine of in-sync pairs → 1 and of pairs 5 frames or more apart → 0 (BCE), as Wav2Lip's
``color_syncnet_train.py``.  Weights are shipped as float16 safetensors (loaded as float32) to keep the folder small.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimgui.core.io import (
    atomic_write_text,
    cache_dir,
    replace_folder,
    resources_dir,
    shipped_or_built,
    usual_permissions,
)
from slimgui.core.progress import CancelToken, ProgressFn, check, report

DEMO_VERSION = 1
MARKER = "slimgui_demo.json"
FPS = 25
SIZE = 96
N_CLIPS = 24
HOLDOUT = 4  # the last clips
MODEL = dict(nef=4, naf=8, ndf=4, residual=True)
EXPERT = dict(nf=4, na=4, residual=False)
TRAIN = dict(gen_steps=900, gen_batch=12, gen_lr=2e-3, sync_steps=900, sync_batch=32, sync_lr=1e-3, seed=0)
WEIGHTS = "wav2lip.safetensors"
EXPERT_DIR = "expert"
EXPERT_WEIGHTS = "lipsync_expert.safetensors"
SAMPLE_FACE = "face.png"
VOICES = ("neutral", "excited")


# -- the face ---------------------------------------------------------------------------------------------------------
@dataclass
class Look:
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    bg: tuple[int, int, int]
    dx: float = 0.0
    dy: float = 0.0


def look_of(i: int) -> Look:
    rng = np.random.default_rng(1000 + i)
    skins = [(150, 180, 220), (110, 150, 200), (90, 120, 170), (170, 200, 235), (70, 100, 140)]
    hairs = [(40, 50, 70), (20, 20, 25), (60, 110, 160), (90, 90, 90)]
    bgs = [(90, 110, 70), (120, 90, 60), (70, 70, 110), (140, 140, 140), (60, 100, 120), (100, 60, 90)]
    return Look(skins[i % len(skins)], hairs[(i // 2) % len(hairs)], bgs[(i * 5) % len(bgs)],
                float(rng.uniform(-4, 4)), float(rng.uniform(-3, 3)))


def draw_face(openness: float, look: Look, size: int = SIZE, *, ox: float = 0.0, oy: float = 0.0) -> np.ndarray:
    """A BGR uint8 face, the mouth ``openness`` (0 closed … 1 wide open); drawn on a 96-unit grid scaled to ``size``."""
    import cv2

    img = np.full((size, size, 3), look.bg, np.uint8)
    s = size / 96 if not (ox or oy) else size / 160
    dx, dy = look.dx + ox, look.dy + oy

    def pt(x, y):
        return int(round((x + dx) * s)), int(round((y + dy) * s))

    def ax(a, b):
        return max(1, int(round(a * s))), max(1, int(round(b * s)))
    aa = cv2.LINE_AA
    cv2.ellipse(img, pt(48, 50), ax(30, 40), 0, 0, 360, look.skin, -1, aa)
    cv2.ellipse(img, pt(48, 24), ax(31, 17), 0, 180, 360, look.hair, -1, aa)
    shade = tuple(int(v * 0.7) for v in look.skin)
    thick = max(1, int(round(2 * s)))
    for ex in (36, 60):
        cv2.line(img, pt(ex - 7, 33), pt(ex + 7, 32), (50, 60, 80), thick, aa)
        cv2.ellipse(img, pt(ex, 40), ax(7, 4), 0, 0, 360, (245, 245, 245), -1, aa)
        cv2.circle(img, pt(ex, 40), max(1, int(round(3 * s))), (40, 30, 20), -1, aa)
    cv2.line(img, pt(48, 44), pt(45, 58), shade, thick, aa)
    cv2.line(img, pt(45, 58), pt(50, 59), shade, thick, aa)
    h = 1.5 + float(np.clip(openness, 0, 1)) * 9
    cv2.ellipse(img, pt(48, 71), ax(11, h + 1.5), 0, 0, 360, (70, 70, 160), -1, aa)
    cv2.ellipse(img, pt(48, 71), ax(9, h), 0, 0, 360, (30, 20, 40), -1, aa)
    return img


def sample_face(size: int = 160) -> np.ndarray:
    """The demo's still face for previews: a ``size``² frame, mouth closed, the face not filling it (a detector
    finds it)."""
    return draw_face(0.0, look_of(N_CLIPS - 1), size, ox=32, oy=30)


def sample_face_box() -> str:
    """X,Y,W,H of the face in :func:`sample_face` (where OpenCV's cascade finds it, 10 px added below the chin as
    Wav2Lip pads): used for the demo's own face when this OpenCV has no cascades."""
    look = look_of(N_CLIPS - 1)
    return f"{round(37 + look.dx)},{round(35 + look.dy)},86,96"


# -- the speech --------------------------------------------------------------------------------------------------------
def clip_texts() -> list[str]:
    from slimgui_families.voice.data import sentences

    return sentences(N_CLIPS, seed=15)


def shipped_model_dir() -> Path:
    return resources_dir() / "demo" / "wav2lip"


def clips_dir(root: Path | None = None) -> Path:
    """The demo's speech clips: the shipped ones, else spoken by espeak-ng into the cache."""
    for folder in ([root / "clips"] if root else []) + [shipped_model_dir() / "clips"]:
        if (folder / "clips.json").is_file():
            return folder
    folder = cache_dir() / f"demo-wav2lip-v{DEMO_VERSION}" / "clips"
    if not (folder / "clips.json").is_file():
        make_clips(folder)
    return folder


def make_clips(folder: Path) -> Path:
    """Speak every sentence with espeak-ng (voices alternating) into ``folder`` as 16 kHz FLAC + clips.json."""
    import soundfile as sf

    from slimgui.core.errors import SlimError
    from slimgui_families.voice.data import have_espeak, speak

    if not have_espeak():
        raise SlimError("the wav2lip demo's speech clips are missing and espeak-ng is not installed",
                        hint="install espeak-ng (Debian: apt-get install espeak-ng) or restore resources/demo/wav2lip")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    doc = []
    for i, text in enumerate(clip_texts()):
        voice = VOICES[i % 2]
        wav = speak(text, voice)
        name = f"{i:02d}.flac"
        sf.write(str(tmp / name), wav, 16_000, subtype="PCM_16")
        doc.append({"file": name, "text": text, "voice": voice, "seconds": round(len(wav) / 16_000, 3)})
    (tmp / "clips.json").write_text(json.dumps({"fps": FPS, "clips": doc}, indent=2) + "\n")
    folder.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(tmp, folder)
    return folder


def openness_of(wav: np.ndarray, frames: int, rate: int = 16_000) -> np.ndarray:
    """Mouth opening per video frame (module docstring)."""
    win = int(0.08 * rate)
    e = np.array([np.sqrt(np.mean(np.square(wav[int(i * rate / FPS):int(i * rate / FPS) + win])) + 1e-12)
                  for i in range(frames)])
    ref = float(np.percentile(e, 95)) or 1.0
    o = np.clip(e / ref, 0, 1)
    o = np.convolve(np.pad(o, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    return np.clip((o - 0.08) / 0.92, 0, 1).astype(np.float32)


@dataclass
class TalkingClip:
    """One talking-face clip: ``frames`` T×96×96×3 BGR uint8 face crops, ``wav`` 16 kHz, ``mel`` (80, N)."""

    frames: np.ndarray
    wav: np.ndarray
    mel: np.ndarray
    fps: float = FPS
    openness: np.ndarray | None = None
    text: str = ""


def load_clips(split: str = "all", root: Path | None = None) -> list[TalkingClip]:
    """The demo's clips rendered as talking faces ("train": all but the last ``HOLDOUT``, "test": those)."""
    import soundfile as sf

    from .audio import melspectrogram

    folder = clips_dir(root)
    doc = json.loads((folder / "clips.json").read_text())
    idx = list(range(len(doc["clips"])))
    if split == "train":
        idx = idx[:-HOLDOUT]
    elif split == "test":
        idx = idx[-HOLDOUT:]
    out = []
    for i in idx:
        c = doc["clips"][i]
        wav, rate = sf.read(str(folder / c["file"]), dtype="float32")
        frames = int(len(wav) / rate * FPS)
        o = openness_of(wav, frames, rate)
        look = look_of(i)
        imgs = np.stack([draw_face(float(v), look) for v in o])
        out.append(TalkingClip(imgs, wav, melspectrogram(wav), FPS, o, c["text"]))
    return out


# -- batches (shared with the healing and the evaluation) -----------------------------------------------------------------
def gen_batch(clips: list[TalkingClip], n: int, rng: np.random.Generator):
    """(mel (n,1,80,16), faces (n,6,96,96) masked + reference in [0, 1], targets (n,3,96,96)) of random frames."""
    import torch

    from .audio import chunk_at

    mels, faces, targets = [], [], []
    for _ in range(n):
        c = clips[int(rng.integers(len(clips)))]
        t = len(c.frames)
        i, j = int(rng.integers(t)), int(rng.integers(t))
        target = c.frames[i]
        masked = target.copy()
        masked[SIZE // 2:] = 0
        faces.append(np.concatenate([masked, c.frames[j]], axis=2))
        targets.append(target)
        mels.append(chunk_at(c.mel, i, c.fps))
    f = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(np.stack(targets)).permute(0, 3, 1, 2).float() / 255.0
    m = torch.from_numpy(np.stack(mels))[:, None]
    return m, f, y


def lower_halves(frames) -> object:
    """(B, 5, 3, 96, 96) or a list of 5 (B, 3, H, W) → SyncNet's (B, 15, H/2, W) input."""
    import torch

    if isinstance(frames, (list, tuple)):
        frames = torch.stack(list(frames), 1)
    h = frames.shape[-2]
    return torch.cat([frames[:, k, :, h // 2:] for k in range(frames.shape[1])], dim=1)


def sync_batch(clips: list[TalkingClip], n: int, rng: np.random.Generator):
    """(mel (n,1,80,16), faces (n,15,48,96), labels (n,)) half in sync, half 5+ frames apart."""
    import torch

    from .audio import chunk_at

    mels, faces, labels = [], [], []
    for k in range(n):
        c = clips[int(rng.integers(len(clips)))]
        t = len(c.frames)
        i = int(rng.integers(t - 5))
        win = c.frames[i:i + 5]
        if k % 2 == 0:
            j, y = i, 1.0
        else:
            j = i
            while abs(j - i) < 5:
                j = int(rng.integers(t - 5))
            y = 0.0
        faces.append(np.concatenate([w[SIZE // 2:] for w in win], axis=2))
        mels.append(chunk_at(c.mel, j, c.fps))
        labels.append(y)
    f = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255.0
    return torch.from_numpy(np.stack(mels))[:, None], f, torch.tensor(labels)


# -- training ------------------------------------------------------------------------------------------------------------
def train_demo(out_dir: Path, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
               steps: int | None = None) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convs: one thread beats two fighting (OpenMP barriers) on a shared 2-core box
    try:
        return _train(Path(out_dir), progress, cancel, steps)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, progress, cancel, steps) -> dict:
    import torch
    from safetensors.torch import save_file

    from .modeling import SyncNet, Wav2Lip, standard, syncnet_standard
    from .sync import sync_report

    t0 = time.time()
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = clips_dir()
    shutil.copytree(src, tmp / "clips")
    train, test = load_clips("train", tmp), load_clips("test", tmp)
    g_steps = steps or TRAIN["gen_steps"]
    s_steps = steps or TRAIN["sync_steps"]
    total = g_steps + s_steps
    torch.manual_seed(TRAIN["seed"])
    rng = np.random.default_rng(TRAIN["seed"])
    # the expert
    expert = SyncNet(syncnet_standard(**EXPERT))
    opt = torch.optim.Adam(expert.parameters(), lr=TRAIN["sync_lr"])
    bce = torch.nn.BCELoss()
    history_sync = []
    expert.train()
    for step in range(1, s_steps + 1):
        check(cancel)
        m, f, y = sync_batch(train, TRAIN["sync_batch"], rng)
        a, v = expert(m, f)
        d = torch.nn.functional.cosine_similarity(a, v).clamp(1e-6, 1 - 1e-6)
        loss = bce(d, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == s_steps:
            expert.eval()
            with torch.no_grad():
                m, f, y = sync_batch(test, 256, np.random.default_rng(7))
                a, v = expert(m, f)
                d = torch.nn.functional.cosine_similarity(a, v)
                acc = float(((d > 0.5).float() == y).float().mean())
            expert.train()
            history_sync.append({"step": step, "train_bce": round(loss.item(), 4), "heldout_accuracy": round(acc, 4)})
            report(progress, step, total, f"training the demo's lip-sync expert: held-out accuracy {acc:.1%}")
    expert.eval()
    # the generator
    gen = Wav2Lip(standard(**MODEL))
    opt = torch.optim.Adam(gen.parameters(), lr=TRAIN["gen_lr"], betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=TRAIN["gen_lr"], total_steps=g_steps, pct_start=0.1)
    history = []
    gen.train()
    test_batch = gen_batch(test, 48, np.random.default_rng(3))
    for step in range(1, g_steps + 1):
        check(cancel)
        m, f, y = gen_batch(train, TRAIN["gen_batch"], rng)
        loss = (gen(m, f) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == g_steps:
            gen.eval()
            with torch.no_grad():
                held = float((gen(test_batch[0], test_batch[1]) - test_batch[2]).abs().mean())
            gen.train()
            history.append({"step": step, "train_l1": round(loss.item(), 4), "heldout_l1": round(held, 4)})
            report(progress, s_steps + step, total, f"training the demo generator: held-out L1 {held:.4f}")
    gen.eval()
    # what it learnt: sync of its output on the held-out clips, in step and shifted
    sync = sync_report(gen, expert, test)
    meta = {
        "demo_version": DEMO_VERSION, "torch": torch.__version__,
        "what": "Wav2Lip generator (official layout with every residual block, base widths nef 4 / naf 8 / ndf 4) and "
                "a SyncNet_color-style expert (no residual blocks, widths 4), on a drawn talking face",
        "data": f"{N_CLIPS} espeak-ng sentences (voices {', '.join(VOICES)}, alternating), 25 fps drawn face whose "
                f"mouth follows the speech energy; the last {HOLDOUT} clips held out",
        "model": MODEL, "expert": EXPERT, "train_config": dict(TRAIN, gen_steps=g_steps, sync_steps=s_steps),
        "loss": "generator: L1 to the frame (no discriminator, no sync loss); expert: BCE of the cosine, in sync vs "
                "5+ frames apart",
        "history_expert": history_sync, "history_generator": history, "heldout_sync": sync,
        "params": sum(p.numel() for p in gen.parameters()), "expert_params": sum(p.numel() for p in expert.parameters()),
        "train_seconds": round(time.time() - t0),
    }
    from .modeling import Wav2LipConfig  # noqa: F401  (the JSON below is its to_json)

    half = {k: v.detach().half().contiguous() if v.is_floating_point() else v.contiguous()
            for k, v in gen.state_dict().items()}
    save_file(half, str(tmp / WEIGHTS), metadata={"format": "pt"})
    side = {"kind": "wav2lip", "config": gen.config.to_json(), "weights": WEIGHTS, "demo": "wav2lip",
            "expert": EXPERT_DIR, "format": "Wav2Lip state dict (Rudrabha/Wav2Lip keys), float16"}
    atomic_write_text(tmp / "slimgui_wav2lip.json", json.dumps(side, indent=2) + "\n")
    (tmp / EXPERT_DIR).mkdir()
    ehalf = {k: v.detach().half().contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in expert.state_dict().items()}
    save_file(ehalf, str(tmp / EXPERT_DIR / EXPERT_WEIGHTS), metadata={"format": "pt"})
    atomic_write_text(tmp / EXPERT_DIR / "slimgui_syncnet.json",
                      json.dumps({"kind": "syncnet", "config": expert.config.to_json()}, indent=2) + "\n")
    import cv2

    cv2.imwrite(str(tmp / SAMPLE_FACE), sample_face())
    atomic_write_text(tmp / MARKER, json.dumps(meta, indent=2) + "\n")
    usual_permissions(tmp)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(tmp, out_dir)
    return meta


def demo_model_dir(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Path:
    return shipped_or_built("wav2lip", DEMO_VERSION, (WEIGHTS, "slimgui_wav2lip.json", MARKER,
                                                      f"{EXPERT_DIR}/{EXPERT_WEIGHTS}", "clips/clips.json"),
                            train_demo, progress, cancel)


def ensure_demo(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, str]:
    d = demo_model_dir(progress, cancel)
    return {"model": str(d), "expert": str(d / EXPERT_DIR), "face": str(d / SAMPLE_FACE),
            "audio": str(d / "clips" / f"{N_CLIPS - 1:02d}.flac")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train SlimGUI's demo Wav2Lip generator and lip-sync expert.")
    ap.add_argument("--out", type=Path, default=shipped_model_dir())
    ap.add_argument("--steps", type=int, default=None, help="steps of each (default: the demo's)")
    ap.add_argument("--respeak", action="store_true", help="speak the clips again with espeak-ng")
    args = ap.parse_args(argv)
    if args.respeak:
        make_clips(cache_dir() / f"demo-wav2lip-v{DEMO_VERSION}" / "clips")
    meta = train_demo(args.out, steps=args.steps)
    print(json.dumps({"out": str(args.out), "heldout_sync": meta["heldout_sync"], "seconds": meta["train_seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
