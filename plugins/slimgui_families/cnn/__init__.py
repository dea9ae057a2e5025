"""SlimGUI's cnn family: plain torchvision-style CNNs (ResNet / MobileNetV1 state dicts) and hardware-aware slimming
(ABConv).  Manifest only; nothing heavy imported here: :mod:`.modeling` (the networks, torchvision's keys),
:mod:`.adapter` (open, graph, block removal, save), :mod:`.data` (the digits), :mod:`.training` (distill, finetune),
:mod:`.evaluate`, :mod:`.export` and :mod:`.demo`."""

from slimgui.core.metrics import Metric
from slimgui.core.plugins import AdapterSpec, DataSpec, DemoSpec, EvaluatorSpec, ExporterSpec, MethodSpec, Plugin

ME = "slimgui_families.cnn"

plugin = Plugin(
    name="cnn", version="1",
    description="Plain convolution networks (ResNet / MobileNetV1 with torchvision's keys): block removal, ABConv",
    adapters=[AdapterSpec("cnn", "cnn", f"{ME}.adapter:CnnAdapter", f"{ME}.probe:match",
                          "ResNet (BasicBlock) and MobileNetV1 classifiers: cnn.json + model.safetensors, or a bare "
                          "torchvision-layout state dict (.safetensors)",
                          capabilities=("bench", "abconv"), items="images", unit_word="block", layout="stack",
                          native="cnn folder (cnn.json + model.safetensors)",
                          data=DataSpec(kind="folder", label="digits (built in)", required=False),
                          default_criterion="magnitude", default_method="distill",
                          file_kinds=("cnn.json", "*.safetensors"))],
    methods=[
        MethodSpec("distill", f"{ME}.training:build_distill", label="Distillation (logits)", families=("cnn",),
                   description="the network learns the original's softened logits (and a share of the labels) on the "
                               "digits' training split", options=f"{ME}.options:DistillOptions", default_lr=2e-3,
                   teacher="original"),
        MethodSpec("finetune", f"{ME}.training:build_finetune", label="Fine-tune", families=("cnn",),
                   description="cross-entropy on the digits' training split", default_lr=2e-3),
    ],
    evaluators=[EvaluatorSpec("digit-accuracy", f"{ME}.evaluate:accuracy", "accuracy on the 360 held-out digits",
                              families=("cnn",),
                              metrics=(Metric("accuracy", "Accuracy", better="higher", fmt="{:.1%}", headline=True),
                                       Metric("images", "Images", fmt="{:,}")))],
    exporters=[ExporterSpec("convnet-onnx", f"{ME}.export:export_onnx", label="ONNX (CNN)", families=("cnn",),
                            description="an ONNX file of the classifier (ABConv layers as Reshape → Conv → Reshape)",
                            options=f"{ME}.options:ConvNetOnnxOptions", output="file", suffix=".convnet.onnx",
                            runner=f"{ME}.export:onnx_runner",
                            metrics=(Metric("agreement", "Agreement with torch", better="higher", fmt="{:.1%}"),
                                     Metric("max_abs_diff", "Max abs diff", better="lower", fmt="{:.3g}")))],
    demos=[DemoSpec("cnn", f"{ME}.demo:ensure_resnet", "ResNet-style CNN (BasicBlocks, ~0.5M params) trained on digits"),
           DemoSpec("cnn-mobilenet", f"{ME}.demo:ensure_mobilenet",
                    "MobileNetV1-style CNN (~0.2M params) trained on digits")],
)
