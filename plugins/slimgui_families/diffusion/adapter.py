"""Opening, slimming and saving diffusers models: Stable-Diffusion-style pipelines and bare U-Nets.

The prunable part is the U-Net (``LoadedModel.module``); the pipeline around it (VAE, text encoder,
tokenizer, scheduler) is kept in ``extra["pipeline"]`` and saved unchanged beside the slimmed U-Net, so
the output folder loads with ``StableDiffusionPipeline.from_pretrained`` (or whatever pipeline class the
original named) and runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from slimgui.core.errors import SlimError
from slimgui.core.graph import UnitGraph
from slimgui.core.io import MAX_CONFIG_BYTES, atomic_write_text, read_bytes_limited, read_json_file
from slimgui.core.model import LoadedModel
from slimgui.core.plan import PruningPlan
from slimgui.core.plugins import ModelAdapter
from slimgui.core.progress import CancelToken, ProgressFn, check, report
from slimgui.core.safety import check_safetensors

from . import files
from . import unet as unet_ops
from .files import FEWSTEP_FILE, MAP_FILE
from .probe import UNET_CLASSES

if TYPE_CHECKING:
    from slimgui.core.bench import BenchRun

MODEL_LIBRARIES = {"diffusers", "transformers"}
NOT_MODELS = ("Tokenizer", "Scheduler", "FeatureExtractor", "ImageProcessor", "Processor")


def _quiet_diffusers() -> None:
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
    try:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
    except Exception:  # pragma: no cover - older diffusers
        pass


def _read_json(path: Path, what: str) -> dict:
    """A JSON object from a regular file of at most ``MAX_CONFIG_BYTES``; anything else is one message."""
    if not path.exists() and not path.is_symlink():
        raise SlimError(f"{what} is missing: {path}")
    doc = read_json_file(path, what, limit=MAX_CONFIG_BYTES, invalid=f"({what}) is not valid JSON")
    if not isinstance(doc, dict):
        raise SlimError(f"{what} {path} is not a JSON object")
    return doc


def _weights(folder: Path) -> tuple[list[Path], list[Path]]:
    safe = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")) if folder.is_dir() else []
    return safe, pickles


def vet_component(folder: Path, name: str, cls: str) -> bool:
    """Check a pipeline component before diffusers touches it; returns whether it has weights."""
    if not folder.is_dir():
        raise SlimError(f"the pipeline's {name} component is missing ({folder} does not exist)",
                        hint="copy the whole pipeline folder, or open the U-Net folder on its own")
    if any(cls.endswith(s) for s in NOT_MODELS):
        if not any(folder.iterdir()):
            raise SlimError(f"the pipeline's {name} folder {folder} is empty")
        for cfg in folder.glob("*.json"):
            _read_json(cfg, f"the {name} file")
        return True
    _read_json(folder / "config.json", f"the {name} config")
    safe, pickles = _weights(folder)
    for f in safe:
        check_safetensors(f)
    if not safe and pickles:
        raise SlimError(f"the pipeline's {name} has only pickle weights ({pickles[0].name}); SlimGUI does not "
                        "unpickle untrusted files", hint="convert it to safetensors (diffusers save_pretrained "
                        "with safe_serialization=True) and open it again")
    return bool(safe)


class DiffusersAdapter(ModelAdapter):
    """The diffusion family's adapter; what it declares (capabilities, items, layout, data) is in the manifest
    (:mod:`slimgui_families.diffusion`), its healing methods in :mod:`.training`, its previewer in :mod:`.generate`."""

    family = "diffusion"
    name = "diffusers"

    # -- opening ---------------------------------------------------------------------------------
    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             match: dict[str, Any] | None = None, trust_remote_code: bool = False, **_: Any) -> LoadedModel:
        """Open a pipeline folder (model_index.json) or a U-Net folder.  ``match``: what :func:`.probe.match`
        read from the folder (its JSON), used instead of reading it again."""
        _quiet_diffusers()
        p = Path(path)
        if p.is_file():
            p = p.parent
        if not p.is_dir():
            raise SlimError(f"{path} is not a diffusers folder", hint="open a pipeline folder (model_index.json) "
                            "or a U-Net folder (config.json)")
        found = match if isinstance(match, dict) and match.get("folder") == str(p) \
            and isinstance(match.get("doc"), dict) else None
        if (p / "model_index.json").is_file():
            doc = found["doc"] if found is not None and found.get("kind") == "pipeline" else None
            return self._load_pipeline(p, progress, cancel, index=doc)
        doc = found["doc"] if found is not None and found.get("kind") == "unet" else None
        return self._load_unet(p, progress, cancel, config=doc)

    def _unet_class(self, config: dict, where: Path):
        import diffusers

        name = config.get("_class_name")
        if name not in UNET_CLASSES:
            raise SlimError(f"{where} holds a {name or 'model without _class_name'}, not a U-Net SlimGUI can slim",
                            hint="SlimGUI opens UNet2DConditionModel and UNet2DModel")
        return getattr(diffusers, name)

    def _load_unet(self, folder: Path, progress, cancel, config: dict | None = None) -> LoadedModel:
        if config is None:
            config = _read_json(folder / "config.json", "the U-Net config")
        cls = self._unet_class(config, folder)
        unet_ops.validate_config(config, str(folder / "config.json"))
        unet_ops.UNetShape.from_config(config)
        safe, pickles = _weights(folder)
        for f in safe:
            check_safetensors(f)
        if not safe and pickles:
            raise SlimError(f"{folder} has only pickle weights ({pickles[0].name}); SlimGUI does not unpickle "
                            "untrusted files", hint="convert them to safetensors and open the folder again")
        report(progress, 0, 1, f"loading {folder.name}")
        check(cancel)
        if not safe:
            with torch.device("meta"):
                module = cls.from_config(config)
            has_weights = False
        else:
            try:
                module = cls.from_pretrained(str(folder), use_safetensors=True, local_files_only=True)
            except Exception as exc:
                raise SlimError(f"diffusers cannot load the U-Net in {folder} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:160]})", hint="the weights may be truncated or "
                                "belong to another config") from None
            has_weights = True
        module.eval()
        report(progress, 1, 1, "loaded")
        return LoadedModel(self.family, self.name, str(folder), module, module.config, None, has_weights, self,
                           extra={"kind": "unet"})

    def _load_pipeline(self, folder: Path, progress, cancel, index: dict | None = None) -> LoadedModel:
        if index is None:
            index = _read_json(folder / "model_index.json", "the pipeline index")
        cls_name = str(index.get("_class_name", ""))
        import diffusers

        if not hasattr(diffusers, cls_name) or not cls_name.endswith("Pipeline"):
            raise SlimError(f"{folder}/model_index.json names '{cls_name}', which is not a diffusers pipeline",
                            hint="custom pipelines with their own code are not opened (no remote code)")
        if "unet" not in index or not index["unet"] or index["unet"][0] is None:
            raise SlimError(f"the pipeline in {folder} has no U-Net", hint="SlimGUI slims U-Net pipelines "
                            "(Stable Diffusion 1.x/2.x-style, DDPM/DDIM)")
        weighted = {}
        for name, spec in index.items():
            if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[0] is None:
                continue
            if name == "safety_checker":  # never loaded: SlimGUI opens pipelines without it
                continue
            weighted[name] = vet_component(folder / name, name, str(spec[1]))
        unet_cfg = _read_json(folder / "unet" / "config.json", "the U-Net config")
        cls = self._unet_class(unet_cfg, folder / "unet")
        unet_ops.validate_config(unet_cfg, str(folder / "unet" / "config.json"))
        unet_ops.UNetShape.from_config(unet_cfg)
        if not weighted.get("unet"):  # config-only: show the structure, nothing to run
            with torch.device("meta"):
                module = cls.from_config(unet_cfg)
            return LoadedModel(self.family, self.name, str(folder), module.eval(), module.config, None, False, self,
                               extra={"kind": "pipeline", "pipeline": None, "pipeline_class": cls_name})
        report(progress, 0, 1, f"loading the {cls_name}")
        check(cancel)
        pipe_cls = getattr(diffusers, cls_name)
        kwargs: dict[str, Any] = {}
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = pipe_cls.from_pretrained(str(folder), use_safetensors=True, local_files_only=True, **kwargs)
        except Exception as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise SlimError(f"diffusers cannot load the pipeline in {folder} ({type(exc).__name__}: {first})",
                            hint="a component may be truncated or not match its config") from None
        pipe.set_progress_bar_config(disable=True)
        unet = pipe.unet.eval()
        report(progress, 1, 1, "loaded")
        return LoadedModel(self.family, self.name, str(folder), unet, unet.config, getattr(pipe, "tokenizer", None),
                           True, self, extra={"kind": "pipeline", "pipeline": pipe, "pipeline_class": cls_name})

    # -- structure -------------------------------------------------------------------------------
    def context_len(self, model: LoadedModel) -> int:
        tok = model.tokenizer
        n = getattr(tok, "model_max_length", None) if tok is not None else None
        return int(n) if n and n < 100_000 else 77

    def to_graph(self, model: LoadedModel) -> UnitGraph:
        graph = unet_ops.unet_graph(model.module, context_len=self.context_len(model), family=self.family)
        pipe = model.extra.get("pipeline")
        if pipe is not None:
            graph.attrs["pipeline_params"] = sum(
                sum(p.numel() for p in c.parameters()) for c in pipe.components.values()
                if isinstance(c, torch.nn.Module))
            graph.attrs["pipeline_class"] = model.extra.get("pipeline_class")
        return graph

    def unit_module(self, model: LoadedModel, unit_id: str) -> torch.nn.Module:
        """The modules that go with a unit: for a layer, its down and mirrored up ResNet/attention blocks."""
        unet = model.module
        shape = unet_ops.UNetShape.from_config(unet.config)
        parts = unit_id.split(".")
        if len(parts) == 4 and parts[2] == "layers":
            stage, i, j = parts[0], int(parts[1]), int(parts[3])
            level = i if stage == "down_blocks" else shape.levels - 1 - i
            mods = []
            for path in (f"down_blocks.{level}.resnets.{j}", f"down_blocks.{level}.attentions.{j}",
                         f"up_blocks.{shape.levels - 1 - level}.resnets.{j}",
                         f"up_blocks.{shape.levels - 1 - level}.attentions.{j}"):
                m = unet_ops._sub(unet, path)
                if m is not None:
                    mods.append(m)
            return torch.nn.ModuleList(mods)
        if unit_id == f"down_blocks.{shape.levels - 1}":
            return torch.nn.ModuleList([unet.get_submodule(unit_id), unet.get_submodule("up_blocks.0")])
        try:
            return unet.get_submodule(unit_id)
        except AttributeError:
            raise SlimError(f"unknown unit '{unit_id}'", hint="`slimgui inspect MODEL` lists the unit ids") from None

    # -- pruning ---------------------------------------------------------------------------------
    def apply_plan(self, model: LoadedModel, plan: PruningPlan, *, copy: bool = True) -> LoadedModel:
        if not model.has_weights:
            student, info = self._meta_removal(model, plan.remove)
        else:
            student, info = unet_ops.remove_units(model.module, list(plan.remove))
        student.eval()
        extra = {k: v for k, v in model.extra.items() if k not in ("graph", "pipeline")}
        pipe = model.extra.get("pipeline")
        if pipe is not None:
            comps = dict(pipe.components)
            comps["unet"] = student
            pipe = type(pipe)(**comps)
            pipe.set_progress_bar_config(disable=True)
        extra.update(pipeline=pipe, unet_map={**info, "teacher": model.source})
        return LoadedModel(model.family, model.adapter, model.source, student, student.config, model.tokenizer,
                           model.has_weights, self, extra=extra)

    def _meta_removal(self, model: LoadedModel, unit_ids: list[str]):
        shape = unet_ops.UNetShape.from_config(model.module.config)
        removal = unet_ops.parse_removal(shape, list(unit_ids))
        cfg = unet_ops.student_config(model.module.config, removal)
        cls = type(model.module)
        with torch.device("meta"):
            student = cls(**{k: v for k, v in cfg.items() if k in unet_ops._init_keys(cls)})
        return student, {"removed": list(unit_ids), "modules": unet_ops.weight_map(shape, removal),
                         "stages": unet_ops.stage_map(shape, removal)}

    def preset_plan(self, model: LoadedModel, preset: str) -> PruningPlan:
        units = unet_ops.preset_units(model.module.config, preset)
        return PruningPlan(remove=units, model=model.source, meta={"preset": preset})

    def save(self, model: LoadedModel, out_dir: str) -> str:
        if not model.has_weights:
            raise SlimError("a config-only model has no weights to save", hint="open the folder with its weights")
        out = Path(out_dir)
        pipe = model.extra.get("pipeline")
        try:
            if pipe is not None:
                pipe.save_pretrained(str(out), safe_serialization=True)
            else:
                model.module.save_pretrained(str(out), safe_serialization=True)
        except OSError as exc:
            raise SlimError(f"cannot write {out}: {exc.strerror or exc}") from None
        info = model.extra.get("unet_map")
        if info is not None:
            atomic_write_text(out / MAP_FILE, unet_ops.mapping_json(info))
        fewstep = Path(model.source) / FEWSTEP_FILE  # a slimmed few-step model still samples in few steps
        if fewstep.is_file():
            atomic_write_text(out / fewstep.name, read_bytes_limited(fewstep, "the few-step record",
                                                                     limit=MAX_CONFIG_BYTES).decode("utf-8", "replace"))
        return str(out)

    # -- data ------------------------------------------------------------------------------------
    def demo_root(self, model: LoadedModel) -> Path | None:
        """The demo folder this model was made from (following plan / healing links), if any."""
        return files.demo_root(model.source)

    def default_data(self, model: LoadedModel) -> str | None:
        """The demo's training images for the demo model and models made from it; else None."""
        if self.demo_root(model) is None:
            return None
        from .demo import ensure_demo

        return ensure_demo()["train"]

    def calibration_batches(self, model: LoadedModel, data: Any) -> list[dict[str, torch.Tensor]]:
        from .calibration import calibration_batches

        return calibration_batches(self, model, data)

    def loss(self, model: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The denoising loss (MSE between predicted and true noise) on one calibration batch."""
        pred = self.unet_call(model.module, batch)
        return torch.nn.functional.mse_loss(pred.float(), batch["noise"].float())

    @staticmethod
    def unet_call(unet: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if batch.get("encoder_hidden_states") is not None and getattr(unet.config, "cross_attention_dim", None):
            kwargs["encoder_hidden_states"] = batch["encoder_hidden_states"]
        if batch.get("class_labels") is not None and getattr(unet.config, "num_class_embeds", None):
            kwargs["class_labels"] = batch["class_labels"]
        return unet(batch["latents"], batch["timesteps"], **kwargs).sample

    # -- benchmark -------------------------------------------------------------------------------
    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str) -> BenchRun | None:
        """One U-Net forward pass over ``batch`` random latents at the U-Net's own resolution (with random text
        embeddings of the tokenizer's length when it is text-conditioned); ``options`` is None (the family has
        no benchmark options).  The run is named "prefill" so the rows keep their keys (``prefill_median_ms``,
        ``images_per_s``); nothing is timed for any other mode."""
        from slimgui.core.bench import BenchRun

        if mode != "forward":
            return None
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights to benchmark")
        unet = model.module.eval()
        cfg = unet.config
        size = unet_ops.UNetShape.from_config(cfg).sample_size
        gen = torch.Generator().manual_seed(0)
        b = {"latents": torch.randn(batch, cfg.in_channels, *size, generator=gen),
             "timesteps": torch.full((batch,), 500, dtype=torch.long)}
        dim = getattr(cfg, "cross_attention_dim", None)
        if dim:
            dim = dim[0] if isinstance(dim, (list, tuple)) else dim
            b["encoder_hidden_states"] = torch.randn(batch, self.context_len(model), dim, generator=gen)
        if getattr(cfg, "num_class_embeds", None):
            b["class_labels"] = torch.zeros(batch, dtype=torch.long)

        def run():
            with torch.no_grad():
                self.unet_call(unet, b)
        return BenchRun("prefill", run, items=batch, label="forward pass")

    def warm_up(self) -> None:
        import diffusers  # noqa: F401
