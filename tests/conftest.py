from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import sample_text, save_tiny_model, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Demo data and settings go to a per-run folder, never the user's cache."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("SLIMGUI_CACHE_DIR")
    os.environ["SLIMGUI_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("SLIMGUI_CACHE_DIR", None)
    else:
        os.environ["SLIMGUI_CACHE_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def _no_timed_progress_lines():
    """Without a terminal the CLI prints a progress line every 5 s; whether a slow machine reaches 5 s before an
    error must not decide a test that counts stderr lines.  Tests of those lines set their own interval."""
    old = os.environ.get("SLIMGUI_PROGRESS_INTERVAL")
    os.environ["SLIMGUI_PROGRESS_INTERVAL"] = "3600"
    yield
    if old is None:
        os.environ.pop("SLIMGUI_PROGRESS_INTERVAL", None)
    else:
        os.environ["SLIMGUI_PROGRESS_INTERVAL"] = old


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "calib.txt"
    path.write_text(sample_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tokenizer):
    """One small saved model folder per supported architecture."""
    root = tmp_path_factory.mktemp("models")
    return {arch: save_tiny_model(arch, root / arch, tokenizer=tokenizer)
            for arch in ("llama", "mistral", "qwen2", "gpt2", "opt", "bert", "bert-base")}


@pytest.fixture(scope="session")
def registry():
    from slimgui.core.plugins import discover

    return discover()


@pytest.fixture(scope="session")
def demo_paths():
    from slimgui_families.llm.demo import ensure_demo

    return ensure_demo()
