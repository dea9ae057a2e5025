"""A third model family, written only against SlimGUI's public plugin API — the proof of the family contract.

A small image classifier of plain convolution layers for scikit-learn's 8×8 digits.  Its prunable units are
groups of filters of its conv layers (channel pruning: a pruned model has physically fewer channels, and
the next layer fewer inputs), it heals by fine-tuning with its own option (label smoothing), evaluates
accuracy on held-out digits, previews by *sonifying* its predictions (one tone per test image, the pitch
saying the digit), exports an ONNX file (``*.cnn.onnx``) with a benchmark runner, and times its forward pass.

Nothing here is known to SlimGUI's core, CLI or GUI: the tests install it through an entry point in a
temporary folder and drive it through the CLI and the app like any other family.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.metrics import Metric
from slimgui.core.options import option
from slimgui.core.plugins import (
    AdapterSpec,
    DataSpec,
    EvaluatorSpec,
    ExporterSpec,
    MethodSpec,
    ModelAdapter,
    Plugin,
    PreviewerSpec,
)

FAMILY = "digitconv"
GROUP = 4  # filters per prunable unit
POOL = 2  # the last conv's features are pooled to POOL×POOL cells per channel before the linear head
CONFIG = "digitconv.json"
ME = __name__


# -- options -----------------------------------------------------------------------------------------
@dataclass
class FinetuneOptions:
    label_smoothing: float = option(0.0, label="label smoothing", lo=0.0, hi=0.5, step=0.05,
                                    help="share of each target spread over the other digits")


@dataclass
class SonifyOptions:
    images: int = option(6, label="test images", lo=1, hi=50, help="held-out digits to classify and play")
    tone_seconds: float = option(0.15, label="tone length", lo=0.02, hi=2.0, step=0.05, help="seconds per tone")


@dataclass
class DigitOnnxOptions:
    check_images: int = option(16, label="check images", lo=1, hi=512, help="digits the export is checked on")


# -- data and model ------------------------------------------------------------------------------------
def digits(split: str):
    """scikit-learn's digits as float tensors (N, 1, 8, 8) in [0, 1] and labels; every 5th image is held out."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    held = torch.arange(len(y)) % 5 == 0
    keep = held if split == "test" else ~held
    return x[keep], y[keep]


def build(channels: list[int]):
    import torch.nn as nn

    layers, c_in = [], 1
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(POOL), nn.Flatten(), nn.Linear(c_in * POOL * POOL, 10))


def train_demo(out: Path, channels: tuple[int, ...] = (16, 24), epochs: int = 25, seed: int = 0) -> Path:
    """Train a classifier on the digits (a few seconds on a CPU) and save it as a model folder."""
    import torch

    torch.manual_seed(seed)
    net = build(list(channels))
    x, y = digits("train")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(epochs):
        for i in range(0, len(x), 128):
            loss = torch.nn.functional.cross_entropy(net(x[i:i + 128]), y[i:i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
    _write(net, list(channels), out)
    return out


def _write(net, channels: list[int], out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    (out / CONFIG).write_text(json.dumps({"family": FAMILY, "channels": channels}))


def match(path: str):
    cfg = Path(path) / CONFIG
    if not cfg.is_file():
        return 0.0
    try:
        doc = json.loads(cfg.read_text())
    except ValueError:
        return 0.0
    return (1.0, doc) if doc.get("family") == FAMILY else 0.0


def _convs(net) -> list[Any]:
    import torch.nn as nn

    return [m for m in net if isinstance(m, nn.Conv2d)]


class DigitConvAdapter(ModelAdapter):
    family = FAMILY

    def load(self, path: str, *, progress=None, cancel=None, match: Any = None, **_: Any):
        from safetensors.torch import load_file

        from slimgui.core.model import LoadedModel

        doc = match if isinstance(match, dict) else json.loads((Path(path) / CONFIG).read_text())
        channels = doc.get("channels")
        if not (isinstance(channels, list) and channels and all(isinstance(c, int) and 0 < c <= 4096 for c in channels)):
            raise SlimError(f"{path}: {CONFIG} needs 'channels', a list of whole numbers")
        net = build(channels)
        try:
            net.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
        except Exception as exc:  # a damaged or mismatched file: one line, not a traceback
            raise SlimError(f"{path}: the weights do not load ({type(exc).__name__})") from None
        return LoadedModel(family=FAMILY, adapter="digitconv", source=str(path), module=net.eval(),
                           config={"channels": channels}, impl=self)

    def to_graph(self, model):
        from slimgui.core.graph import Unit, UnitGraph

        units = [Unit("net", "model", "CNN", params=sum(p.numel() for p in model.module.parameters()))]
        for i, conv in enumerate(_convs(model.module)):
            layer = f"conv{i}"
            per = conv.weight[0].numel() + 1
            units.append(Unit(layer, "layer", f"conv {i} ({conv.out_channels} filters)", parent="net",
                              params=conv.weight.numel() + conv.bias.numel()))
            last = i == len(_convs(model.module)) - 1
            for g in range(conv.out_channels // GROUP):
                units.append(Unit(f"{layer}.g{g}", "filters", f"filters {g * GROUP}-{g * GROUP + GROUP - 1}",
                                  parent=layer, params=per * GROUP, prunable=not (last and g == 0)))
        return UnitGraph(FAMILY, units, attrs={"unit_word": "filter group"})

    def unit_module(self, model, unit_id: str):
        import torch.nn as nn

        layer, g = unit_id.split(".g")
        conv = _convs(model.module)[int(layer[4:])]
        holder = nn.Module()
        holder.weight = nn.Parameter(conv.weight[int(g) * GROUP:(int(g) + 1) * GROUP].detach().clone())
        return holder

    def apply_plan(self, model, plan, *, copy: bool = True):
        import copy as copying

        import torch

        from slimgui.core.model import LoadedModel

        net = copying.deepcopy(model.module) if copy else model.module
        convs = _convs(net)
        drop: dict[int, set[int]] = {}
        for uid in plan.remove:
            layer, g = uid.split(".g")
            drop.setdefault(int(layer[4:]), set()).update(range(int(g) * GROUP, (int(g) + 1) * GROUP))
        keep_prev = None
        for i, conv in enumerate(convs):
            keep = [c for c in range(conv.out_channels) if c not in drop.get(i, set())]
            w = conv.weight.data[keep]
            if keep_prev is not None:
                w = w[:, keep_prev]
            conv.weight = torch.nn.Parameter(w.clone())
            conv.bias = torch.nn.Parameter(conv.bias.data[keep].clone())
            conv.in_channels, conv.out_channels = w.shape[1], w.shape[0]
            keep_prev = keep
        head = net[-1]
        cols = [c * POOL * POOL + k for c in keep_prev for k in range(POOL * POOL)]
        head.weight = torch.nn.Parameter(head.weight.data[:, cols].clone())
        head.in_features = len(cols)
        channels = [c.out_channels for c in convs]
        return LoadedModel(family=FAMILY, adapter=model.adapter, source=model.source, module=net,
                           config={"channels": channels}, impl=self, extra={"plan": plan})

    def save(self, model, out_dir: str) -> str:
        _write(model.module, list(model.config["channels"]), Path(out_dir))
        return out_dir

    def bench_runner(self, model, batch: int, options: Any, mode: str):
        import torch

        from slimgui.core.bench import BenchRun

        if mode != "forward":
            return None
        x = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        net = model.module.eval()

        def run():
            with torch.no_grad():
                net(x)
        return BenchRun("forward", run, items=batch, label="forward pass")


# -- healing, evaluation, preview, export ----------------------------------------------------------------
def build_finetune(adapter: DigitConvAdapter, cfg: Any, options: FinetuneOptions, *, registry=None):
    import torch

    from slimgui.core.train import TrainTask

    model = adapter.load(cfg.model)
    net = model.module.train()
    x, y = digits("train")
    n_val = max(1, int(len(y) * cfg.val_fraction))
    smoothing = float(options.label_smoothing)

    def loss(m, batch):
        out = m(batch["x"])
        value = torch.nn.functional.cross_entropy(out, batch["y"], label_smoothing=smoothing)
        return value, {"train_accuracy": float((out.argmax(1) == batch["y"]).float().mean())}

    def save(m, out_dir: str) -> None:
        _write(m, [c.out_channels for c in _convs(m)], Path(out_dir))

    return TrainTask(model=net, train_blocks={"x": x[n_val:], "y": y[n_val:]}, val_blocks={"x": x[:n_val], "y": y[:n_val]},
                     loss=loss, save=save, info={"items": "images", "items_per_sample": 1},
                     val_metrics=lambda mean: {"val_error_bound": 1.0 - math.exp(-mean)})


def accuracy(model, data_path: str | None = None, *, progress=None, cancel=None, **_: Any) -> dict[str, Any]:
    import torch

    x, y = digits("test")
    with torch.no_grad():
        pred = model.module.eval()(x).argmax(1)
    return {"accuracy": float((pred == y).float().mean()), "images": int(len(y))}


def sonify(model, *, images: int = 6, tone_seconds: float = 0.15, **_: Any):
    """One tone per held-out digit: its pitch is 220 Hz × 2^(predicted digit / 10), silence between tones."""
    import numpy as np
    import torch

    from slimgui.core.media import AudioMedia

    rate = 16_000
    x, y = digits("test")
    with torch.no_grad():
        pred = model.module.eval()(x[:images]).argmax(1).tolist()
    t = np.arange(int(rate * tone_seconds)) / rate
    gap = np.zeros(int(rate * 0.05), dtype=np.float32)
    parts = []
    for d in pred:
        parts += [(0.3 * np.sin(2 * np.pi * 220.0 * 2 ** (d / 10) * t)).astype(np.float32), gap]
    return AudioMedia(samples=np.concatenate(parts), sample_rate=rate, title="predicted " + " ".join(map(str, pred)),
                      meta={"predicted": pred, "true": y[:images].tolist()})


def export_onnx(model, out: str, *, registry=None, force: bool = False, progress=None, cancel=None,
                check_images: int = 16, **_: Any) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch

    x, _ = digits("test")
    x = x[:check_images]
    torch.onnx.export(model.module.eval(), (x,), out, input_names=["pixels"], output_names=["logits"],
                      dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"pixels": x.numpy()})[0]
    with torch.no_grad():
        ref = model.module(x).numpy()
    return {"file": out, "bytes": Path(out).stat().st_size, "agreement": float(np.mean(got.argmax(1) == ref.argmax(1)))}


def onnx_runner(path: str, batch: int, options: Any, mode: str, *, threads: int | None = None, state=None):
    import numpy as np
    import onnxruntime as ort

    from slimgui.core.bench import BenchRun

    if mode != "forward":
        return None
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {"pixels": np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)}
    return BenchRun("forward", lambda: sess.run(None, feed), items=batch, label="forward pass")


plugin = Plugin(
    name=FAMILY, version="1", description="Proof of the contract: a conv classifier of scikit-learn's digits",
    adapters=[AdapterSpec("digitconv", FAMILY, f"{ME}:DigitConvAdapter", f"{ME}:match",
                          "digit classifiers of plain conv layers (digitconv.json + model.safetensors)",
                          capabilities=("bench",), items="images", unit_word="filter group", native="digitconv folder",
                          data=DataSpec(kind="folder", label="digits (built in)", required=False),
                          default_criterion="magnitude", file_kinds=(CONFIG,))],
    methods=[MethodSpec("finetune", f"{ME}:build_finetune", label="Fine-tune", families=(FAMILY,),
                        description="every weight trains on the digits with cross-entropy",
                        options=f"{ME}:FinetuneOptions", default_lr=3e-3)],
    evaluators=[EvaluatorSpec("digit-accuracy", f"{ME}:accuracy", "accuracy on held-out digits", families=(FAMILY,),
                              metrics=(Metric("accuracy", "Accuracy", better="higher", fmt="{:.1%}", headline=True),
                                       Metric("images", "Images", fmt="{:,}")))],
    previewers=[PreviewerSpec("sonify", f"{ME}:sonify", "audio", "the predictions as tones (pitch = digit)",
                              families=(FAMILY,), options=f"{ME}:SonifyOptions", label="Predictions as sound")],
    exporters=[ExporterSpec("cnn-onnx", f"{ME}:export_onnx", label="ONNX (digits CNN)", families=(FAMILY,),
                            options=f"{ME}:DigitOnnxOptions", output="file", suffix=".cnn.onnx",
                            runner=f"{ME}:onnx_runner",
                            metrics=(Metric("agreement", "Agreement with torch", better="higher", fmt="{:.1%}"),))],
)
