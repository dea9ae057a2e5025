"""Models opened from several threads at once (the app's worker lanes) all load right, and leave the libraries' global
patches as they found them: transformers' from_pretrained swaps PreTrainedModel.tie_weights for a no-op while it
builds, and two builds at once used to leave it swapped, so every tied model loaded afterwards lacked its head."""

from __future__ import annotations

import threading

from slimgui.core.model import LOADING, open_model


def test_concurrent_opens_keep_weight_tying(tiny_models, registry):
    from transformers import PreTrainedModel

    original = PreTrainedModel.tie_weights
    errors: list[BaseException] = []
    go = threading.Event()

    def worker(arch: str) -> None:
        go.wait(10)
        try:
            for _ in range(3):
                open_model(str(tiny_models[arch]), registry=registry)
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(a,)) for a in ("gpt2", "opt", "llama", "gpt2")]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert PreTrainedModel.tie_weights is original
    model = open_model(str(tiny_models["gpt2"]), registry=registry)  # a tied model still loads whole
    assert model.module.lm_head.weight is model.module.transformer.wte.weight


def test_open_model_holds_the_loading_lock(tiny_models, registry, monkeypatch):
    seen = []
    impl = registry.adapter("transformers")
    real = type(impl).load

    def spy(self, *a, **k):
        seen.append(LOADING._is_owned())
        return real(self, *a, **k)

    monkeypatch.setattr(type(impl), "load", spy)
    open_model(str(tiny_models["llama"]), registry=registry)
    assert seen == [True]
