"""SpeechT5 voice converters (transformers ``SpeechT5ForSpeechToSpeech``, and ``SpeechT5ForTextToSpeech``, which shares
their encoder body and decoder) as a stack of pre-nets, encoder blocks, decoder blocks, post-net and vocoder, pruned by
depth into a physically smaller model that ``from_pretrained`` loads back.

Unit ids::

    prenet               the speech encoder pre-net (waveform feature encoder + positional conv) or the text pre-net
    encoder.{i}          encoder block i                  (prunable)
    decoder-prenet       the speech decoder pre-net (mel frames + speaker embedding)
    decoder.{i}          decoder block i                  (prunable)
    postnet              the speech decoder post-net (mel frames, stop flag, convolutional refinement)
    vocoder              the HiFi-GAN beside the model, or Griffin-Lim (no parameters)

MACs are per second of audio (:func:`macs_per_second`): the encoder runs ``rate / Π conv_stride`` frames a second,
the decoder ``rate / hop / reduction_factor`` steps (the output as long as the input).  Heads and feed-forward channels
are not units: SpeechT5's config has one head count and one feed-forward width for all blocks, so a model pruned
unevenly in width would not load with ``from_pretrained``; depth is what a plain SpeechT5 folder can express.
"""

from __future__ import annotations

import copy as copying
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimgui.core.bench import BenchRun
from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.model import LoadedModel, origin_with
from slimgui.core.plugins import ModelAdapter
from slimgui.core.progress import CancelToken, ProgressFn, report
from slimgui.core.safety import check_pickle_checkpoint, check_safetensors

from . import probe
from .audio import MelSettings, mel_settings

FAMILY = "voice"
ADAPTER = "speecht5"
PREPROCESSOR = "preprocessor_config.json"
SPEAKER = "slimgui_speaker.safetensors"  # optional: the speaker embedding (x-vector) conversion uses
TEXT_PRENET = "slimgui_text_prenet.safetensors"  # optional: the text pre-net of the multitask recipe's TTS branch
CARRIED = (PREPROCESSOR, SPEAKER, TEXT_PRENET)
ID = re.compile(r"^(encoder|decoder)\.(\d+)$")
DEMO_MARKER = "slimgui_demo.json"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def layers(module: nn.Module, side: str) -> nn.ModuleList:
    body = module.speecht5
    return body.encoder.wrapped_encoder.layers if side == "encoder" else body.decoder.wrapped_decoder.layers


def macs_per_second(cfg: Any, mel: MelSettings, kind: str) -> dict[str, int]:
    """MACs a second of audio costs in each part (the unit ids of the module docstring, blocks by side)."""
    d, rate = cfg.hidden_size, mel.sample_rate
    r = cfg.reduction_factor
    steps = rate / mel.hop / r  # decoder steps a second
    out: dict[str, int] = {}
    if kind == "speech":
        frames, n, c_in, macs = float(rate), float(rate), 1, 0.0
        for c, k, s in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride):
            n = n / s
            macs += n * c * c_in * k
            c_in = c
        frames = n
        macs += frames * c_in * d + frames * d * (d / cfg.num_conv_pos_embedding_groups) * cfg.num_conv_pos_embeddings
        out["prenet"] = int(macs)
    else:
        frames = 15.0  # characters a second of speech
        out["prenet"] = 0
    ffn_e, ffn_d = cfg.encoder_ffn_dim, cfg.decoder_ffn_dim
    out["encoder"] = int(frames * (4 * d * d + 2 * d * ffn_e) + 2 * frames * frames * d)
    units = cfg.speech_decoder_prenet_units
    out["decoder-prenet"] = int(steps * (cfg.num_mel_bins * units + units * units * (cfg.speech_decoder_prenet_layers - 1)
                                         + units * d + (d + cfg.speaker_embedding_dim) * d))
    out["decoder"] = int(steps * (8 * d * d + 2 * d * ffn_d) + steps * steps * d + 2 * steps * frames * d
                         + frames * 2 * d * d)
    pu, k, mels = cfg.speech_decoder_postnet_units, cfg.speech_decoder_postnet_kernel, cfg.num_mel_bins
    conv = mels * pu * k * 2 + pu * pu * k * max(0, cfg.speech_decoder_postnet_layers - 2)
    out["postnet"] = int(steps * (d * mels * r + d * r) + steps * r * conv)
    return out


class VoiceAdapter(ModelAdapter):
    """Opens SpeechT5 speech-to-speech and text-to-speech folders.  Declared capabilities (see the manifest):
    calibration, default-data, bench."""

    family = FAMILY

    def warm_up(self) -> None:
        import transformers.models.speecht5.modeling_speecht5  # noqa: F401

    # -- opening -------------------------------------------------------------------------------------------------
    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             weights: bool = True, match: Any = None, **_: Any) -> LoadedModel:
        """Open a SpeechT5 folder; a config-only folder is built on the meta device (graph and sizes, no weights)."""
        from transformers import SpeechT5Config, SpeechT5ForSpeechToSpeech, SpeechT5ForTextToSpeech
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        report(progress, 0, 3, "reading config")
        p = Path(path).expanduser()
        folder = probe.folder_of(p) if p.exists() else None
        if folder is None:
            raise SlimError(f"{path} is not a SpeechT5 model folder",
                            hint="a folder with config.json (and model.safetensors)")
        if isinstance(match, dict) and match.get("folder") == str(folder) and isinstance(match.get("config"), dict):
            doc = match["config"]
        else:
            doc = probe.read_config(folder)
        arch, _full = probe.check(doc, str(folder / "config.json"))
        cls = SpeechT5ForSpeechToSpeech if arch == "SpeechT5ForSpeechToSpeech" else SpeechT5ForTextToSpeech
        files = self._weight_files(folder) if weights else []
        report(progress, 1, 3, "loading weights" if files else "building structure (no weights)")
        if files:
            module = self._from_pretrained(cls, folder, files)
        else:
            config = SpeechT5Config(**{k: v for k, v in doc.items() if k not in ("architectures", "transformers_version")})
            with torch.device("meta"):
                module = cls(config)
        module.eval()
        extra = self._extras(folder, module.config)
        extra.update({"weight_files": [str(f) for f in files], "kind": probe.ARCHITECTURES[arch]})
        report(progress, 3, 3, "loaded")
        return LoadedModel(family=FAMILY, adapter=ADAPTER, source=str(folder), module=module, config=module.config,
                           has_weights=bool(files), impl=self, extra=extra)

    @staticmethod
    def _weight_files(folder: Path) -> list[Path]:
        safes = sorted(folder.glob("model*.safetensors"))
        for f in safes:
            check_safetensors(f)
        if safes:
            return safes
        pickles = sorted(folder.glob("pytorch_model*.bin"))
        for f in pickles:
            check_pickle_checkpoint(f)
        return pickles

    @staticmethod
    def _from_pretrained(cls, folder: Path, files: list[Path]) -> nn.Module:
        try:
            module, info = cls.from_pretrained(str(folder), output_loading_info=True,
                                               use_safetensors=files[0].suffix == ".safetensors",
                                               dtype=torch.float32)
        except Exception as exc:  # mismatched shapes, damaged files: one line
            raise SlimError(f"the weights in {folder} do not load as {cls.__name__}: {_first_line(exc)}",
                            hint="repair config.json or use the weights that belong to it") from None
        missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
        mismatched = info.get("mismatched_keys") or []
        if missing or mismatched:
            what = missing[0] if missing else mismatched[0][0] if isinstance(mismatched[0], tuple) else mismatched[0]
            raise SlimError(f"the weights in {folder} do not match its config.json: {len(missing) + len(mismatched)} "
                            f"tensor(s) missing or of the wrong shape (e.g. {what})",
                            hint="the weights may belong to another model")
        return module.float()

    @staticmethod
    def _extras(folder: Path, config: Any) -> dict[str, Any]:
        from slimgui.core.io import read_json_file

        pre: dict[str, Any] = {}
        f = folder / PREPROCESSOR
        if f.is_file():
            try:
                doc = read_json_file(f, "the feature extractor's config", limit=1 << 20)
                pre = doc if isinstance(doc, dict) else {}
            except SlimError:
                pre = {}
        mel = mel_settings(pre, config.num_mel_bins)
        if mel.n_mels != config.num_mel_bins:
            raise SlimError(f"{folder}: preprocessor_config.json asks for {mel.n_mels} mel bins, the model makes "
                            f"{config.num_mel_bins}", hint="repair or remove preprocessor_config.json")
        speaker = None
        if (folder / SPEAKER).is_file():
            from safetensors.torch import load_file

            check_safetensors(folder / SPEAKER)
            t = load_file(str(folder / SPEAKER)).get("speaker_embeddings")
            if t is None or t.numel() != config.speaker_embedding_dim:
                raise SlimError(f"{folder / SPEAKER} does not hold a speaker embedding of "
                                f"{config.speaker_embedding_dim} numbers", hint="remove it or write the right one")
            speaker = t.float().reshape(1, -1)
        return {"preprocess": pre, "mel": mel, "speaker": speaker, "normalize": bool(pre.get("do_normalize", False)),
                "vocoder_path": str(probe.find_vocoder(folder) or "")}

    # -- structure -------------------------------------------------------------------------------------------------
    def to_graph(self, model: LoadedModel) -> UnitGraph:
        module, cfg = model.module, model.config
        kind = model.extra.get("kind", "speech")
        mel: MelSettings = model.extra.get("mel") or MelSettings()
        macs = macs_per_second(cfg, mel, kind)
        body = module.speecht5

        def count(m: nn.Module) -> int:
            return int(sum(p.numel() for p in m.parameters()))

        units: list[Unit] = []
        enc_prenet = body.encoder.prenet
        label = "Speech pre-net (waveform feature encoder)" if kind == "speech" else "Text pre-net (characters)"
        units.append(Unit("prenet", "prenet", label, params=count(enc_prenet), macs=macs["prenet"],
                          attrs={"note": "the encoder's input: "
                                 + ("raw 16 kHz waveform" if kind == "speech" else "character ids")}))
        ids = ["prenet"]
        enc = layers(module, "encoder")
        enc_shared = count(body.encoder.wrapped_encoder) - sum(count(b) for b in enc)
        for i, block in enumerate(enc):
            units.append(Unit(f"encoder.{i}", "block", f"Encoder block {i}", params=count(block), macs=macs["encoder"],
                              prunable=True, attrs={"index": i, "side": "encoder", "heads": cfg.encoder_attention_heads,
                                                    "ffn": cfg.encoder_ffn_dim}))
            ids.append(f"encoder.{i}")
        units.append(Unit("decoder-prenet", "prenet", "Decoder pre-net (mel frames + speaker)",
                          params=count(body.decoder.prenet), macs=macs["decoder-prenet"]))
        ids.append("decoder-prenet")
        dec = layers(module, "decoder")
        for i, block in enumerate(dec):
            units.append(Unit(f"decoder.{i}", "block", f"Decoder block {i}", params=count(block), macs=macs["decoder"],
                              prunable=True, attrs={"index": i, "side": "decoder", "heads": cfg.decoder_attention_heads,
                                                    "ffn": cfg.decoder_ffn_dim}))
            ids.append(f"decoder.{i}")
        post = module.speech_decoder_postnet
        units.append(Unit("postnet", "postnet", "Post-net (mels, stop flag, refinement)",
                          params=count(post), macs=macs["postnet"]))
        ids.append("postnet")
        voc = model.extra.get("vocoder_path") or ""
        units.append(Unit("vocoder", "vocoder", "Vocoder: HiFi-GAN" if voc else "Vocoder: Griffin-Lim (no weights)",
                          params=0, attrs={"note": f"{voc} (not pruned, not saved with the model)" if voc else
                                           "librosa Griffin-Lim: no vocoder folder beside the model"}))
        ids.append("vocoder")
        total = count(module)
        total_macs = (macs["prenet"] + macs["encoder"] * len(enc) + macs["decoder-prenet"] + macs["decoder"] * len(dec)
                      + macs["postnet"])
        attrs = {"layout": "stack", "architecture": type(module).__name__, "model_type": "speecht5",
                 "encoder_blocks": len(enc), "decoder_blocks": len(dec), "hidden_size": cfg.hidden_size,
                 "total_params": total, "shared_params": enc_shared, "macs_per": "second of audio",
                 "macs_note": "MACs per second of audio (output as long as the input)", "total_macs": int(total_macs),
                 "unit_word": "block", "mel": {"sample_rate": mel.sample_rate, "bins": mel.n_mels, "hop": mel.hop},
                 "rules": "encoder and decoder blocks are removed whole; at least one of each must stay"}
        return UnitGraph(FAMILY, units, edges=list(zip(ids, ids[1:])), attrs=attrs)

    def unit_module(self, model: LoadedModel, unit_id: str) -> nn.Module:
        m = ID.match(unit_id)
        if m:
            side, i = m.group(1), int(m.group(2))
            blocks = layers(model.module, side)
            if i < len(blocks):
                return blocks[i]
        body = model.module.speecht5
        fixed = {"prenet": body.encoder.prenet, "decoder-prenet": body.decoder.prenet,
                 "postnet": model.module.speech_decoder_postnet}
        if unit_id in fixed:
            return fixed[unit_id]
        raise SlimError(f"unknown unit '{unit_id}'", hint="`slimgui inspect MODEL` lists the unit ids")

    def apply_plan(self, model: LoadedModel, plan: Any, *, copy: bool = True) -> LoadedModel:
        """The model without the plan's blocks: the kept ones renumbered, ``encoder_layers``/``decoder_layers`` set."""
        gone: dict[str, set[int]] = {"encoder": set(), "decoder": set()}
        for uid in plan.remove:
            m = ID.match(str(uid))
            if not m or int(m.group(2)) >= len(layers(model.module, m.group(1))):
                raise SlimError(f"unknown unit '{uid}'", hint="`slimgui inspect MODEL` lists the unit ids "
                                                              "(encoder.N and decoder.N blocks)")
            gone[m.group(1)].add(int(m.group(2)))
        n_old = {s: len(layers(model.module, s)) for s in gone}
        kept = {s: [i for i in range(n_old[s]) if i not in gone[s]] for s in gone}
        for side, k in kept.items():
            if not k:
                raise SlimError(f"the plan removes every {side} block",
                                hint=f"keep at least one {side} block; remove fewer units")
        module = _copy(model.module) if copy else model.module
        for side, k in kept.items():
            blocks = layers(module, side)
            new = nn.ModuleList([blocks[i] for i in k])
            if side == "encoder":
                module.speecht5.encoder.wrapped_encoder.layers = new
                module.config.encoder_layers = len(k)
            else:
                module.speecht5.decoder.wrapped_decoder.layers = new
                module.config.decoder_layers = len(k)
        for i, layer in enumerate(layers(module, "decoder")):  # cache positions follow the new numbering
            for attn in (getattr(layer, "self_attn", None), getattr(layer, "encoder_attn", None)):
                if attn is not None and hasattr(attn, "layer_idx"):
                    attn.layer_idx = i
        origin = dict(model.extra.get("block_origin") or {})
        origin = {s: [(origin.get(s) or list(range(n_old[s])))[i] for i in k] for s, k in kept.items()}
        extra = {k: v for k, v in model.extra.items() if k in ("preprocess", "mel", "speaker", "normalize", "kind",
                                                                "vocoder_path")}
        notes = [f"{len(gone[s])} of {n_old[s]} {s} blocks removed" for s in gone if gone[s]]
        extra |= {"notes": notes, "block_origin": origin, "weight_files": []}
        return LoadedModel(family=FAMILY, adapter=model.adapter, source=model.source, module=module,
                           config=module.config, has_weights=model.has_weights, impl=self, extra=extra)

    # -- saving ----------------------------------------------------------------------------------------------------
    def save(self, model: LoadedModel, out_dir: str) -> str:
        """A plain transformers folder (``save_pretrained``: config.json with the new block counts, model.safetensors)
        plus the feature extractor's config, the speaker embedding and the text pre-net when the model has them."""
        if not model.has_weights:
            raise SlimError("a model opened without weights cannot be saved", hint="open a folder with weights")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.module.save_pretrained(str(out), safe_serialization=True)
        src = Path(model.source)
        for name in CARRIED:
            if (src / name).is_file() and not (out / name).exists():
                shutil.copy(src / name, out / name)
        pre = model.extra.get("preprocess")
        if pre and not (out / PREPROCESSOR).exists():
            (out / PREPROCESSOR).write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")
        return str(out)

    # -- data, loss and benchmark -------------------------------------------------------------------------------------
    def default_data(self, model: LoadedModel) -> str | None:
        """The demo's parallel clips, for the demo model and models made from it."""
        if origin_with(model.source, DEMO_MARKER) is None:
            return None
        from .demo import clips_folder

        return str(clips_folder())

    def calibration_batches(self, model: LoadedModel, data: Any) -> list[dict[str, torch.Tensor]]:
        """Parallel utterances (source waveform → target log-mels) of a clips folder (the demo's layout:
        ``neutral/NNN.ogg``, ``excited/NNN.ogg``, ``sentences.json``), ``samples`` of its training sentences spread
        evenly, in batches of ``batch_size``."""
        from slimgui.core.data import CalibrationData

        from .training import parallel_batches

        if data is None:
            path = self.default_data(model)
            if path is None:
                raise SlimError("this criterion needs calibration speech",
                                hint="pass --data FOLDER (parallel clips: neutral/NNN.ogg and excited/NNN.ogg)")
            data = CalibrationData(path)
        spec = data if isinstance(data, CalibrationData) else CalibrationData(str(data))
        self._need_speech(model)
        batches, used = parallel_batches(model, spec.path, spec.samples, spec.batch_size, split="train")
        model.extra["calibration_used"] = {"data": {"path": str(spec.path), "samples": used,
                                                    "samples_requested": spec.samples, "batch_size": spec.batch_size},
                                           "warnings": [] if used >= spec.samples else
                                           [f"calibration used {used} utterances, not the {spec.samples} asked for"]}
        return batches

    @staticmethod
    def _need_speech(model: LoadedModel) -> None:
        if model.extra.get("kind") != "speech":
            raise SlimError("this is a text-to-speech model: calibration on parallel speech needs a speech-to-speech "
                            "converter", hint="use a criterion that needs no data, e.g. magnitude")

    def loss(self, model: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The teacher-forced mel L1 (before + after the post-net) plus the stop-flag BCE on the batch."""
        from .speech import mel_loss, stop_loss, teacher_forced

        out = teacher_forced(model.module, batch)
        return mel_loss(out, batch) + 0.5 * stop_loss(out, batch)

    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str) -> BenchRun | None:
        """One conversion of ``batch`` seeded random 2-second waveforms (autoregressive, a fixed number of steps)."""
        if mode != "forward":
            return None
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights to benchmark")
        self._need_speech(model)
        seconds = float(getattr(options, "seconds", 2.0) or 2.0)
        mel = model.extra.get("mel") or MelSettings()
        x = torch.randn(batch, int(seconds * mel.sample_rate), generator=torch.Generator().manual_seed(0)) * 0.1
        steps = max(1, int(seconds * mel.sample_rate / mel.hop / model.config.reduction_factor))
        module = model.module.eval()

        def run():
            fixed_steps(module, x, steps)
        return BenchRun("forward", run, items=batch * seconds, label=f"conversion of {seconds:g} s of audio")

    def describe_result(self, model: LoadedModel) -> dict[str, Any]:
        cfg = model.config
        mel = model.extra.get("mel") or MelSettings()
        return {"architecture": type(model.module).__name__, "encoder blocks": cfg.encoder_layers,
                "decoder blocks": cfg.decoder_layers, "width": cfg.hidden_size,
                "mels": f"{mel.n_mels} bins, {mel.sample_rate} Hz, hop {mel.hop}",
                "vocoder": model.extra.get("vocoder_path") or "Griffin-Lim"}


def _copy(module: nn.Module) -> nn.Module:
    new = copying.deepcopy(module)
    new.config = copying.deepcopy(module.config)
    return new


@torch.no_grad()
def fixed_steps(module: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` autoregressive decoder steps after the encoder (no stop: a timing of a fixed amount of work)."""
    cfg = module.config
    body = module.speecht5
    enc = body.encoder(input_values=x, return_dict=True).last_hidden_state
    seq = enc.new_zeros(x.shape[0], 1, cfg.num_mel_bins)
    spk = enc.new_zeros(x.shape[0], cfg.speaker_embedding_dim)
    cache = None
    for _ in range(steps):
        h = body.decoder.prenet(seq, spk)
        out = body.decoder.wrapped_decoder(hidden_states=h[:, -1:], encoder_hidden_states=enc, cache=cache,
                                           use_cache=True, return_dict=True)
        cache = out.cache
        spec = module.speech_decoder_postnet.feat_out(out.last_hidden_state.squeeze(1))
        seq = torch.cat([seq, spec.view(x.shape[0], cfg.reduction_factor, cfg.num_mel_bins)[:, -1:]], dim=1)
    return seq
