"""Recording a source utterance from a microphone (issue 16's preview): an option declared ``record="audio"`` gets a
record button in the app and ``slimgui record`` on the command line; where there is no microphone (this machine) both
say so in one line and nothing is attempted.  A fake sounddevice stands in for a microphone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from slimgui.cli import main  # noqa: E402
from slimgui.core import recording  # noqa: E402
from slimgui.core.media import load_wav  # noqa: E402
from slimgui.core.options import option  # noqa: E402


@dataclass
class Speech:
    audio: str | None = option(None, label="source audio", path="file", record="audio", none_label="the demo's own")


class FakeMicrophone:
    """sounddevice's recording calls, answering with a 440 Hz tone."""

    def __init__(self):
        self.calls = []

    def query_devices(self, kind=None):
        return {"name": "Fake USB microphone", "max_input_channels": 1}

    def rec(self, frames, samplerate, channels, dtype):
        self.calls.append((frames, samplerate, channels))
        t = np.arange(frames) / samplerate
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 1)

    def wait(self):
        return None


@pytest.fixture
def microphone(monkeypatch):
    mic = FakeMicrophone()
    monkeypatch.setattr(recording, "_sounddevice", lambda: (mic, ""))
    return mic


@pytest.fixture
def no_microphone(monkeypatch):
    monkeypatch.setattr(recording, "_sounddevice", lambda: (None, "no microphone: PortAudio is not installed (x)"))


def test_the_cli_records_a_wav(microphone, tmp_path, capsys):
    out = tmp_path / "me.wav"
    assert main(["record", "--out", str(out), "--seconds", "1.5", "--json"]) == 0
    media = load_wav(out)
    assert media.sample_rate == 16_000 and abs(media.duration - 1.5) < 0.01
    assert microphone.calls == [(24_000, 16_000, 1)]
    assert main(["record", "--out", str(out)]) == 2  # an existing file needs --force
    assert "already exists" in capsys.readouterr().err


def test_without_a_microphone_the_cli_says_so_in_one_line(no_microphone, tmp_path, capsys):
    assert main(["record", "--out", str(tmp_path / "me.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("slimgui: error: no microphone") and len(err.splitlines()) == 1
    assert not (tmp_path / "me.wav").exists()


def test_the_record_button_fills_the_field(qtbot, microphone, tmp_path, monkeypatch):
    from slimgui.gui import forms

    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(forms, "RECORD_SECONDS", 0.5)
    form = forms.OptionsForm([(None, Speech)])
    qtbot.addWidget(form)
    button = form.record_button("audio")
    assert button is not None and button.isEnabled() and "Fake USB microphone" in button.toolTip()
    button.click()
    path = form.values(0).audio
    assert path and path.endswith(".wav") and abs(load_wav(path).duration - 0.5) < 0.01


def test_without_a_microphone_the_button_is_off_and_says_why(qtbot, no_microphone):
    from slimgui.gui.forms import OptionsForm

    form = OptionsForm([(None, Speech)])
    qtbot.addWidget(form)
    button = form.record_button("audio")
    assert not button.isEnabled() and button.toolTip().startswith("no microphone")
    assert form.browse_button("audio").isEnabled()  # a file can still be chosen


def test_this_machine_answers_without_error():
    device, why = recording.input_device()
    assert (device is None) == bool(why)
