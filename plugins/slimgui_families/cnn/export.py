"""ONNX export of a cnn-family network (ABConv layers become Reshape → Conv → Reshape) and its benchmark runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def export_onnx(model, out: str, *, registry=None, force: bool = False, progress=None, cancel=None,
                check_images: int = 32, **_: Any) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch

    cfg = model.config
    x = torch.rand(check_images, cfg["in_channels"], cfg["image_size"], cfg["image_size"],
                   generator=torch.Generator().manual_seed(0))
    if cfg["in_channels"] == 1 and cfg["image_size"] == 16:
        from .data import digits

        x = digits("test")[0][:check_images]
    net = model.module.eval()
    torch.onnx.export(net, (x,), out, input_names=["pixels"], output_names=["logits"],
                      dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"pixels": x.numpy()})[0]
    with torch.no_grad():
        ref = net(x).numpy()
    return {"file": out, "bytes": Path(out).stat().st_size, "agreement": float(np.mean(got.argmax(1) == ref.argmax(1))),
            "max_abs_diff": float(np.abs(got - ref).max())}


def onnx_runner(path: str, batch: int, options: Any, mode: str, *, threads: int | None = None, state=None):
    import numpy as np
    import onnxruntime as ort

    from slimgui.core.bench import BenchRun

    if mode != "forward":
        return None
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [batch, *[d if isinstance(d, int) else 1 for d in inp.shape[1:]]]
    feed = {inp.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    return BenchRun("forward", lambda: sess.run(None, feed), items=batch, label="forward pass")
