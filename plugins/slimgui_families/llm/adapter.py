"""Transformers language models (decoders and BERT-style encoders) as a stack of prunable blocks."""

from __future__ import annotations

import copy as copy_mod
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimgui.core.bench import BenchRun
from slimgui.core.data import CalibrationData, read_text_file
from slimgui.core.errors import SlimError
from slimgui.core.graph import UnitGraph
from slimgui.core.model import LoadedModel, origin_with
from slimgui.core.plan import PruningPlan
from slimgui.core.plugins import ModelAdapter
from slimgui.core.progress import CancelToken, ProgressFn, report
from slimgui.core.safety import check_pickle_checkpoint, check_safetensors

from . import blocks
from .blocks import (  # noqa: F401  (re-exported: the family's shared helpers, importable from here as before)
    PER_LAYER_CONFIG_KEYS,
    causal_lm_loss,
    copy_sentence_transformers,
    mask_tokens,
    per_layer_config,
)
from .probe import HUB_ID, checked_folder
from .skeleton import ATTN_CONTEXT, child_group  # noqa: F401  (ATTN_CONTEXT: importable from here as before)

if TYPE_CHECKING:  # torch is imported where it is used: opening a config-only folder needs none of it
    import torch
    from torch import nn

FAMILY = "llm"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def _structure_from_config(doc: dict[str, Any], key: str | None) -> dict[str, Any] | None:
    """What the structure cache would hold for this config, computed from its numbers (see :mod:`.skeleton`), and
    kept under ``key``; None for an architecture the formulas do not describe (it is built instead)."""
    from . import skeleton
    from .stream_graph import store

    s = skeleton.from_config(doc)
    if s is None:
        return None
    units, ids, attrs = skeleton.graph_units(s)
    graph = UnitGraph(FAMILY, units, edges=list(zip(ids, ids[1:])), attrs=attrs)
    extra = {"kind": s.kind, "stack_path": s.stack}
    if key:
        store(key, graph, extra)
    return {"graph": graph.to_json(), "extra": extra}


class TransformersAdapter(ModelAdapter):
    """Opens transformers folders whose model is a stack of identical blocks.

    Declared capabilities (see the manifest): calibration, default-data, width, bench, decode."""

    family = FAMILY

    def warm_up(self) -> None:
        """Import transformers' modelling code ahead of the first open (the GUI calls it in the background)."""
        _quiet_transformers()
        import transformers.modeling_utils  # noqa: F401
        from transformers import AutoModelForCausalLM  # noqa: F401

    # -- opening ------------------------------------------------------------------------------
    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             trust_remote_code: bool = False, weights: bool = True, match: Any = None, stream: bool | None = None,
             **_: Any) -> LoadedModel:
        """Open a transformers folder (or hub id).  ``match``: what :func:`slimgui_families.llm.probe.match` found for
        ``path`` (its folder and config.json), so the config is not read again; None: read it here.

        ``stream``: True opens a safetensors checkpoint streamed (on the meta device; the criteria and the prune read
        one block at a time, see :mod:`.stream`), False in memory, None (default) streams when the weights would not
        fit in the memory available; a streamed model says so in ``extra["notes"]``."""
        if Path(path).suffix.lower() == ".gguf" and Path(path).is_file():
            from .gguf_file import load_gguf

            return load_gguf(self, path, progress=progress, trust_remote_code=trust_remote_code, stream=stream,
                             cancel=cancel)
        report(progress, 0, 3, "reading config")
        folder, doc = checked_folder(path, match)
        remote = folder is None and not Path(path).exists() and HUB_ID.match(path)
        if folder is None and not remote:
            raise SlimError(f"{path} is not a transformers model folder", hint="a folder with config.json is needed")
        source = str(folder) if folder else path
        graph_key = None
        if folder is not None and not trust_remote_code and not _.get("_built_lazily"):
            from .stream_graph import LazyModel, cached, has_weight_files, structure_key

            if not weights or not has_weight_files(folder):  # config only: the structure may be known already
                graph_key = structure_key(folder)
                hit = cached(graph_key) if graph_key else None
                if hit is None and doc is not None:  # a common architecture: its structure is arithmetic
                    hit = _structure_from_config(doc, graph_key)
                if hit is not None:
                    from slimgui.core.graph import UnitGraph

                    def build() -> LoadedModel:
                        return self.load(path, trust_remote_code=trust_remote_code, weights=weights, match=match,
                                         stream=stream, _built_lazily=True)

                    report(progress, 3, 3, "structure (known config)")
                    return LazyModel(build, family=FAMILY, adapter="transformers", source=source, has_weights=False,
                                     impl=self, extra={**dict(hit.get("extra") or {}), "weight_files": [],
                                                       "graph": UnitGraph.from_json(hit["graph"]),
                                                       "graph_key": graph_key, "config_doc": doc})
        import torch

        _quiet_transformers()
        config = self._config(source, remote, trust_remote_code, doc)
        cls, kind = self._model_class(config)
        files = [] if remote else self._weight_files(folder)
        has_weights = remote or (bool(files) and weights)
        streamed = None
        if has_weights and not remote and stream is not False:
            streamed = self._stream_plan(folder, config, cls, stream)
        report(progress, 1, 3, "building structure (weights streamed)" if streamed else
               "loading weights" if has_weights else "building structure (no weights)")
        if streamed is not None:
            module = streamed[0]
        elif has_weights:
            try:
                module, info = cls.from_pretrained(source, config=config, dtype=torch.float32,
                                                   trust_remote_code=trust_remote_code, output_loading_info=True)
            except SlimError:
                raise
            except Exception as exc:
                raise SlimError(f"could not load the weights in {source}: {_first_line(exc)}",
                                hint="check that the weights belong to this config") from None
            missing = [k for k in info.get("missing_keys", []) if not k.endswith(("position_ids", "masked_bias"))]
            if missing:
                raise SlimError(f"the weights in {source} do not match its config: {len(missing)} tensors are "
                                f"missing (e.g. {missing[0]})", hint="the weights may belong to another model")
        else:
            with torch.device("meta"):
                build = getattr(cls, "from_config", None) or cls._from_config  # Auto* or a concrete class
                module = build(config, dtype=torch.float32)
        module.eval()
        tokenizer = self._tokenizer(source, folder, remote, trust_remote_code)
        report(progress, 3, 3, "loaded")
        model = LoadedModel(family=FAMILY, adapter="transformers", source=source, module=module, config=module.config,
                            tokenizer=tokenizer, has_weights=has_weights, impl=self,
                            extra={"kind": kind, "weight_files": [str(f) for f in files]})
        stack_path, _ = self.stack(model)  # fail early when there is no block stack
        if graph_key is not None and not has_weights:
            model.extra["graph_key"] = graph_key  # to_graph keeps the structure for the next open
        if streamed is not None:
            from .stream import StackNames, StreamSource, make_plan

            ck = streamed[1]
            names = StackNames(stack_path, list(ck.tensors))
            plan = make_plan(ck, names, bool(stream))
            model.extra["stream"] = StreamSource(ck, names, plan, stack_path)
            model.extra["notes"] = list(plan.notes)
            model.extra["streamed_scorers"] = {"taylor": _stream_taylor}
        if has_weights and files:
            model.extra["stored_dtypes"] = stored_float_dtypes(files, stack_path)
            stored = (model.extra["stored_dtypes"] or {}).get("default")
            if stored:  # what a parameter takes on disk (the model computes in float32): for size estimates
                model.extra["bytes_per_param"] = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[stored]
        return model

    def _stream_plan(self, folder: Path, config, cls, stream: bool | None):
        """(meta module, checkpoint) when the model is to be streamed, else None (see :meth:`load`)."""
        import torch

        from .stream import Checkpoint, fits_in_memory

        ck = Checkpoint.open(folder)
        if ck is None:
            if stream:
                raise SlimError(f"--stream: {folder} has no safetensors weights to stream",
                                hint="streaming reads model.safetensors or a sharded model.safetensors.index.json")
            return None
        if not stream and fits_in_memory(ck):
            return None
        from accelerate import init_empty_weights

        with init_empty_weights():  # parameters on the meta device, buffers (rotary frequencies) real
            build = getattr(cls, "from_config", None) or cls._from_config
            module = build(config, dtype=torch.float32)
        return module, ck

    def _config(self, source: str, remote: bool, trust_remote_code: bool, doc: dict[str, Any] | None = None):
        from transformers import AutoConfig

        if not remote:
            cfg_path = Path(source) / "config.json"
            if doc is None and not cfg_path.is_file():
                raise SlimError(f"{source} has no config.json", hint="a folder with config.json is needed")
            try:
                doc = json.loads(cfg_path.read_text(encoding="utf-8")) if doc is None else doc
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SlimError(f"{cfg_path} is not valid JSON ({_first_line(exc)})",
                                hint="repair or replace the model's config.json") from None
            if not isinstance(doc, dict):
                raise SlimError(f"{cfg_path} is not a JSON object", hint="repair or replace the model's config.json")
            if "model_type" not in doc:
                raise SlimError(f"{cfg_path} has no model_type", hint="this does not look like a transformers config")
        try:
            return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        except Exception as exc:
            msg = _first_line(exc)
            if remote:
                raise SlimError(f"could not fetch {source} from the hub: {msg}",
                                hint="check the model id and your network, or open a local folder") from None
            model_type = doc.get("model_type")
            if "does not recognize" in str(exc) or "Unrecognized" in str(exc) or "model_type" in str(exc):
                import transformers

                raise SlimError(f"unknown architecture '{model_type}' in {cfg_path}",
                                hint=f"transformers {transformers.__version__} does not know it; upgrade transformers "
                                     "or, if the folder ships its own code and you trust it, pass "
                                     "--trust-remote-code") from None
            raise SlimError(f"{cfg_path} is not a usable config: {msg}") from None

    def _model_class(self, config):
        import transformers
        from transformers.models.auto import modeling_auto as ma

        for arch in config.architectures or []:
            cls = getattr(transformers, arch, None)
            if cls is not None:
                kind = "decoder" if arch.endswith(("ForCausalLM", "LMHeadModel")) else "encoder"
                return cls, kind
        mt = config.model_type
        if mt in ma.MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return transformers.AutoModelForMaskedLM, "encoder"
        if mt in ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return transformers.AutoModelForCausalLM, "decoder"
        return transformers.AutoModel, "encoder"

    def _weight_files(self, folder: Path) -> list[Path]:
        _check_shards(folder)
        safes = sorted(folder.glob("*.safetensors"))
        for f in safes:
            check_safetensors(f)
            _check_dtypes(f, folder)
        if safes:
            return safes
        pickles = sorted(list(folder.glob("pytorch_model*.bin")) + list(folder.glob("*.pth")) + list(folder.glob("*.pt")))
        for f in pickles:
            check_pickle_checkpoint(f)
        return pickles

    def _tokenizer(self, source: str, folder: Path | None, remote: bool, trust_remote_code: bool):
        if folder is not None and not any((folder / f).is_file() for f in _TOKENIZER_FILES):
            return None
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except Exception as exc:
            raise SlimError(f"the tokenizer in {source} cannot be loaded: {_first_line(exc)}") from None
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        return tok

    # -- structure ---------------------------------------------------------------------------
    def stack(self, model: LoadedModel) -> tuple[str, nn.ModuleList]:
        """(dotted path, ModuleList) of the model's blocks: the outermost list of identical modules."""
        return blocks.find_stack(model)

    def _set_stack(self, model: LoadedModel, layers: list[nn.Module]) -> nn.ModuleList:
        from torch import nn

        path, old = self.stack(model)
        parent_path, _, attr = path.rpartition(".")
        parent = model.module.get_submodule(parent_path) if parent_path else model.module
        setattr(parent, attr, nn.ModuleList(layers))
        return old

    @staticmethod
    def _child_groups(block: nn.Module) -> dict[str, list[tuple[str, nn.Module]]]:
        groups: dict[str, list[tuple[str, nn.Module]]] = {"attn": [], "mlp": []}
        for name, child in block.named_children():
            g = child_group(name)
            if g is not None and any(True for _ in child.parameters()):
                groups[g].append((name, child))
        return groups

    def to_graph(self, model: LoadedModel) -> UnitGraph:
        from . import skeleton

        path, layers = self.stack(model)
        units, ids, attrs = skeleton.graph_units(skeleton.from_module(
            model.module, model.config, path, layers, model.extra.get("kind", "decoder")))
        from .stream import stream_of

        src = stream_of(model)
        if src is not None:  # what each block takes on disk, from the shards' headers
            stored = src.block_bytes()
            for u in units:
                if u.kind == "block":
                    u.attrs["bytes"] = int(stored.get(src.source_index(u.attrs["index"]), 0))
        key = model.extra.get("graph_key")
        if key and not model.has_weights and src is None:
            from .stream_graph import store

            graph = UnitGraph(FAMILY, units, edges=list(zip(ids, ids[1:])), attrs=attrs)
            store(key, graph, {"kind": model.extra.get("kind"), "stack_path": path})
            return graph
        if src is not None:
            attrs["streamed"] = True
            attrs["stored_bytes"] = sum(int(u.attrs.get("bytes", 0)) for u in units if u.kind == "block") + sum(
                t.nbytes for t in src.checkpoint.tensors.values() if src.names.block_of(t.name) is None)
            attrs["notes"] = list(model.extra.get("notes") or [])
        return UnitGraph(FAMILY, units, edges=list(zip(ids, ids[1:])), attrs=attrs)

    def unit_module(self, model: LoadedModel, unit_id: str) -> nn.Module:
        """The unit's module; on a streamed model a block is read from the checkpoint (a real copy, ~one block
        of memory until it is dropped), so ``magnitude`` reads one block at a time."""
        from .stream import load_resident, materialize_block, stream_of

        _, layers = self.stack(model)
        parts = unit_id.split(".")
        streamed = stream_of(model) is not None
        if streamed and unit_id in ("embed", "head"):
            load_resident(model)
        if parts[0] == "block" and len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(layers):
            block = materialize_block(model, int(parts[1])) if streamed else layers[int(parts[1])]
            if len(parts) == 2:
                return block
            members = self._child_groups(block).get(parts[2])
            if members:
                from torch import nn

                return nn.ModuleList([m for _, m in members])
        elif unit_id == "embed":
            return model.module.get_input_embeddings()
        elif unit_id == "head" and model.module.get_output_embeddings() is not None:
            return model.module.get_output_embeddings()
        raise SlimError(f"unit '{unit_id}' has no module of its own in this model")

    # -- pruning -----------------------------------------------------------------------------
    def apply_plan(self, model: LoadedModel, plan: PruningPlan, *, copy: bool = True) -> LoadedModel:
        graph = self.to_graph(model)
        plan.validate(graph)
        remove = {graph.resolve(u).attrs["index"] for u in plan.remove}
        path, layers = self.stack(model)
        keep = [i for i in range(len(layers)) if i not in remove]
        module = copy_mod.deepcopy(model.module) if copy else model.module
        new = LoadedModel(family=FAMILY, adapter=model.adapter, source=model.source, module=module,
                          config=module.config, tokenizer=model.tokenizer, has_weights=model.has_weights, impl=self,
                          extra={"kind": model.extra.get("kind"), "stack_path": path,
                                 "stored_dtypes": model.extra.get("stored_dtypes"),
                                 **({"bytes_per_param": model.extra["bytes_per_param"]}
                                    if "bytes_per_param" in model.extra else {})})
        old_layers = module.get_submodule(path)
        kept = [old_layers[i] for i in keep]
        self._set_stack(new, kept)
        for new_idx, block in enumerate(kept):
            for sub in block.modules():
                if isinstance(getattr(sub, "layer_idx", None), int):
                    sub.layer_idx = new_idx
        cfg = module.config
        cfg.num_hidden_layers = len(keep)
        for key, values in per_layer_config(cfg, keep, len(layers)).items():
            setattr(cfg, key, values)
        new.extra["kept_indices"] = keep
        new.extra["removed_indices"] = sorted(remove)
        from .stream import stream_of

        src = stream_of(model)
        if src is not None:  # still streamed: saving copies the kept blocks' tensors from the checkpoint
            import dataclasses

            new.extra["stream"] = dataclasses.replace(src, kept=[src.source_index(k) for k in keep])
            new.extra["notes"] = list(model.extra.get("notes") or [])
            new.extra["streamed_scorers"] = dict(model.extra.get("streamed_scorers") or {})
        return new

    def save(self, model: LoadedModel, out_dir: str) -> str:
        if not model.has_weights:
            raise SlimError("a model opened without weights cannot be saved", hint="open a folder with weights")
        from .stream import stream_of

        if stream_of(model) is not None:
            from .stream_prune import save_streamed

            return save_streamed(model, out_dir)
        dtypes = model.extra.get("stored_dtypes")
        if dtypes:  # computed in float32, saved in the checkpoint's own precision (bf16 stays bf16)
            model.module.save_pretrained(out_dir, state_dict=cast_state_dict(model.module, dtypes))
            cfg_path = Path(out_dir) / "config.json"
            doc = json.loads(cfg_path.read_text(encoding="utf-8"))
            doc["dtype"] = dtypes["default"]
            cfg_path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        else:
            model.module.save_pretrained(out_dir)
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(out_dir)
        src = Path(str(model.source))
        if src.is_dir():
            copy_sentence_transformers(src, Path(out_dir), getattr(model.config, "hidden_size", None))
        return out_dir

    # -- width and benchmark ----------------------------------------------------------------------
    def width_variant(self, model: LoadedModel, target_params: int) -> LoadedModel:
        from .width import width_prune

        return width_prune(model, target_params)

    def can_decode(self, model: LoadedModel) -> bool:
        return self.is_decoder(model)

    def context_limit(self, model: LoadedModel) -> tuple[int, str] | None:
        return blocks.context_limit(model)

    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str) -> BenchRun | None:
        """One prefill (mode "forward": a forward pass over batch × ``options.seq`` tokens) or one greedy decode of
        ``options.new_tokens`` tokens with the KV cache (mode "decode"; None when ``options.decode`` is off).
        ``options``: a :class:`~slimgui_families.llm.options.BenchOptions` whose ``seq`` is this row's length."""
        import torch

        from .options import BenchOptions

        options = options if options is not None else BenchOptions()
        seq = blocks.bench_seq(options)
        new_tokens = int(options.new_tokens)
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights to benchmark")
        from .stream import refuse_streamed

        refuse_streamed(model, "the benchmark")
        blocks.check_context(model, "--seq", seq)
        prompt_len = min(seq, 16)
        if options.decode and self.is_decoder(model):
            blocks.check_context(model, "--new-tokens", new_tokens + prompt_len,
                                 what=f" (after a prompt of {prompt_len} tokens)")
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen)
        module = model.module.eval()
        if mode == "forward":
            def run():
                with torch.no_grad():
                    module(input_ids=ids, use_cache=False)
            return BenchRun("prefill", run, items=batch * seq, label="prefill")
        if mode != "decode":
            raise SlimError(f"unknown benchmark mode '{mode}'")
        if not options.decode or not self.is_decoder(model):
            return None
        prompt = ids[:, :prompt_len]
        pad = model.tokenizer.pad_token_id if model.tokenizer is not None else 0
        if pad is None:
            pad = 0

        def decode():
            with torch.no_grad():
                module.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
        return BenchRun("decode", decode, items=batch * new_tokens, label="decode", per="token",
                        per_count=new_tokens, repeats=0.5)

    # -- data --------------------------------------------------------------------------------
    def default_data(self, model: LoadedModel) -> str | None:
        """The demo's training text for the demo model and models pruned from it; else None."""
        if origin_with(model.source, "slimgui_demo.json") is None:
            return None
        from .demo import ensure_demo

        return ensure_demo()["train"]

    def default_eval_data(self, model: LoadedModel) -> str | None:
        """The demo's held-out text (``eval.txt``, never trained on) for the demo model and models made from it."""
        if origin_with(model.source, "slimgui_demo.json") is None:
            return None
        from .demo import ensure_demo

        return ensure_demo()["eval"]

    def resolve_data(self, model: LoadedModel, data: Any) -> CalibrationData:
        if isinstance(data, CalibrationData):
            return data
        if data is None:
            path = self.default_data(model)
            if path is None:
                raise SlimError("this criterion needs calibration text", hint="pass --data FILE (a UTF-8 text file)")
            return CalibrationData(path)
        return CalibrationData(str(data))

    def _need_tokenizer(self, model: LoadedModel):
        return blocks.need_tokenizer(model)

    def calibration_batches(self, model: LoadedModel, data: Any) -> list[dict[str, torch.Tensor]]:
        """``samples`` segments of ``seq_len`` tokens, spread evenly over the text, in batches.

        The text is tokenized without special tokens; each segment then starts with the tokenizer's BOS token
        when the ``bos`` option says so (default: where the tokenizer adds one itself, as Gemma's and LLaMA's do;
        the segment is then BOS + ``seq_len`` − 1 text tokens, as the Shortened LLaMA scripts'
        ``add_bos_to_every``).  A text longer than ``samples`` spans of ``12 * seq_len`` characters gives
        ``samples`` spans spread evenly over it (first at the start, last at the end), each cut to its first
        tokens; a shorter text is tokenized whole and cut into consecutive segments, as many as fit (at most
        ``samples``).  What was used is recorded in ``model.extra["calibration_used"]`` (:meth:`calibration_info`),
        BOS included, with a warning when it is fewer segments than asked for.
        """
        import torch

        spec = self.resolve_data(model, data)
        opts = calibration_options(spec)
        seq_len = int(opts.seq_len)
        tok = self._need_tokenizer(model)
        blocks.check_context(model, "--seq-len", seq_len)
        bos = blocks.bos_token(model, opts.bos)
        lead = [] if bos is None else [bos]
        need = seq_len - len(lead)  # text tokens per segment
        text = read_text_file(spec.path, "calibration file")
        span = seq_len * 12  # characters: comfortably more than seq_len tokens
        if len(text) <= span * spec.samples:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) < need:
                raise SlimError(f"calibration file {spec.path} has only {len(ids)} tokens; "
                                f"at least {need} are needed", hint="give a longer text or a smaller --seq-len")
            n = min(spec.samples, len(ids) // need)
            segs = [lead + ids[i * need:(i + 1) * need] for i in range(n)]
            available = f"{Path(spec.path).name} has {len(ids)} tokens, enough for {len(ids) // need}"
        else:
            step = (len(text) - span) / max(1, spec.samples - 1)
            segs = []
            for i in range(spec.samples):
                start = int(i * step)
                ids = tok(text[start:start + span], add_special_tokens=False)["input_ids"]
                if len(ids) >= need:
                    segs.append(lead + ids[:need])
            if not segs:
                raise SlimError(f"calibration file {spec.path} gives no {seq_len}-token segment")
            available = (f"{spec.samples - len(segs)} of the {spec.samples} {span}-character spans of "
                         f"{Path(spec.path).name} hold fewer than {need} tokens")
        model.extra["calibration_used"] = self._calibration_record(spec, seq_len, len(segs), available,
                                                                   bos=bos is not None)
        ids = torch.tensor(segs, dtype=torch.long)
        return [{"input_ids": b, "attention_mask": torch.ones_like(b)} for b in ids.split(spec.batch_size)]

    @staticmethod
    def _calibration_record(spec: CalibrationData, seq_len: int, used: int, available: str, *,
                            bos: bool = False) -> dict[str, Any]:
        warnings = []
        if used < spec.samples:
            warnings.append(f"calibration used {used} segments of {seq_len} tokens, not the {spec.samples} "
                            f"asked for: {available} (give a longer text, a smaller --seq-len or fewer --samples)")
        return {"data": {"path": spec.path, "seq_len": seq_len, "samples": used,
                         "samples_requested": spec.samples, "batch_size": spec.batch_size,
                         "tokens": used * seq_len, "bos": bos},
                "warnings": warnings}

    @staticmethod
    def calibration_info(model: LoadedModel) -> dict[str, Any] | None:
        """What the last :meth:`calibration_batches` on ``model`` used: ``{"data": {path, seq_len, samples (used),
        samples_requested, batch_size, tokens, bos (each segment starts with the BOS token)}, "warnings": [str, ...]}``, or None if it has not run."""
        return model.extra.get("calibration_used")

    def is_decoder(self, model: LoadedModel) -> bool:
        return blocks.is_decoder(model)

    def loss(self, model: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-token loss (decoders) or masked-LM loss (encoders with an LM head)."""
        from torch import nn

        from .stream import refuse_streamed

        if not model.extra.get("stream_head_only"):  # the streamed criteria run only the head through here
            refuse_streamed(model, "a loss over the whole model (this criterion)")
        module = model.module
        if self.is_decoder(model):
            logits = module(**batch, use_cache=False).logits
            return causal_lm_loss(logits, batch["input_ids"])
        if module.get_output_embeddings() is not None:
            masked, labels = mask_tokens(batch["input_ids"], model.tokenizer)
            out = module(input_ids=masked, attention_mask=batch["attention_mask"])
            return nn.functional.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        raise SlimError("this criterion needs a training loss, and this encoder has no language-modelling head",
                        hint="use ppl (output change), bi or magnitude, or open the model with its masked-LM head")


def _stream_taylor(model: LoadedModel, data: Any, *, select, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> dict[str, float]:
    """``taylor`` (and ``taylor-matrices``: ``select``) on a streamed model, block by block backwards."""
    from .stream_criteria import taylor

    adapter = model.impl if isinstance(model.impl, TransformersAdapter) else TransformersAdapter()
    return taylor(adapter, model, data, select=select, progress=progress, cancel=cancel)


_SAFETENSORS_FLOATS = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


def _name_pattern(name: str, stack_path: str) -> str:
    """A tensor name with its block index replaced by ``*``: the same for every block, before and after pruning."""
    return re.sub(rf"^{re.escape(stack_path)}\.\d+\.", f"{stack_path}.*.", name)


_NOT_WEIGHTS = re.compile(r"(position_ids|token_type_ids|masked_bias|attn\.bias|inv_freq)$")


def _check_shards(folder: Path) -> None:
    """A sharded checkpoint's index must find its shards: a missing one is named (not "config only")."""
    from slimgui.core.io import read_json_file

    for index in sorted(folder.glob("*.index.json")):
        try:
            doc = read_json_file(index, "the weights' index", limit=64 << 20)
        except SlimError:
            raise
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict):
            raise SlimError(f"{index.name} has no weight_map", hint="repair or replace the index")
        shards = sorted({str(v) for v in weight_map.values()})
        missing = [name for name in shards if not (folder / Path(name).name).is_file()]
        if missing:
            raise SlimError(f"{index.name} names {len(shards)} weight shard(s) and {len(missing)} are missing: "
                            f"{', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}",
                            hint="copy every shard beside the index (a download may have stopped)")


def _check_dtypes(file: Path, folder: Path) -> None:
    """Weights stored as integers or booleans (a relabelled or damaged header, or a quantised checkpoint) are
    refused by name instead of being cast silently to float32."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as fh:
        for key in fh.keys():
            dtype = fh.get_slice(key).get_dtype()
            if dtype in _SAFETENSORS_FLOATS or _NOT_WEIGHTS.search(key):
                continue
            quantised = (folder / "config.json").is_file() and "quantization_config" in (
                folder / "config.json").read_text(encoding="utf-8", errors="replace")
            raise SlimError(f"{file.name} stores {key} as {dtype}, not as floating-point numbers"
                            + (": a quantised checkpoint (quantization_config)" if quantised else ""),
                            hint="SlimGUI opens floating-point checkpoints (float32/16, bfloat16); "
                                 + ("dequantise it first" if quantised else "the file may be damaged or relabelled"))


def stored_float_dtypes(files: list[Path], stack_path: str) -> dict[str, Any] | None:
    """The floating dtypes the checkpoint stores, read from the safetensors headers (no tensor is read):
    ``{"default": the most common, "by_name": {name pattern: dtype} for tensors stored otherwise}``;
    None when everything is float32 (what the model is computed in) or there is no safetensors file."""
    from collections import Counter

    from safetensors import safe_open

    found: dict[str, str] = {}
    for f in files:
        if f.suffix != ".safetensors":
            continue
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                dtype = _SAFETENSORS_FLOATS.get(fh.get_slice(key).get_dtype())
                if dtype is not None:
                    found[_name_pattern(key, stack_path)] = dtype
    if not found or set(found.values()) == {"float32"}:
        return None
    default = Counter(found.values()).most_common(1)[0][0]
    return {"default": default, "by_name": {k: v for k, v in found.items() if v != default},
            "stack_path": stack_path}


def cast_state_dict(module: nn.Module, dtypes: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every floating tensor in the dtype the checkpoint stored it in; tensors
    that share storage (tied embeddings) stay shared, so transformers still saves them once."""
    import torch

    stack_path = dtypes.get("stack_path", "")
    by_name, default = dtypes.get("by_name") or {}, getattr(torch, dtypes["default"])
    cast: dict[tuple, torch.Tensor] = {}
    out = {}
    for name, t in module.state_dict().items():
        if not t.is_floating_point():
            out[name] = t
            continue
        stored = by_name.get(_name_pattern(name, stack_path))
        target = getattr(torch, stored) if stored else default
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), target)
        if key not in cast:
            cast[key] = t.detach().to(target)
        out[name] = cast[key]
    return out


def calibration_options(data: CalibrationData):
    """The family's :class:`~slimgui_families.llm.options.CalibrationOptions` of calibration ``data`` (its
    ``options``, checked; the schema's defaults for what is not given)."""
    from slimgui.core.options import from_dict

    from .options import CalibrationOptions

    given = {k: v for k, v in dict(getattr(data, "options", None) or {}).items() if v is not None}
    return from_dict(CalibrationOptions, given, where="calibration option")


def calibration_seq_len(data: CalibrationData) -> int:
    """The segment length of calibration ``data``: its ``options["seq_len"]`` (the family's CalibrationOptions,
    checked; the schema's default when not given)."""
    return int(calibration_options(data).seq_len)
