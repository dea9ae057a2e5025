"""The sound and video viewers (pytest-qt, offscreen): waveform and spectrogram, Play without a sound device,
frame stepping, seeking and playing, and saving WAV / MP4 files that load back."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from slimgui.core.media import AudioMedia, VideoMedia, load_wav, read_frames, save_video  # noqa: E402
from slimgui.gui import media_viewers  # noqa: E402
from slimgui.gui.viewers import VIEWERS, AudioViewer, VideoViewer, viewer_class, viewer_for  # noqa: E402

RATE = 8000
FPS = 25
NO_SOUND = "No sound: simulated for the test"


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def squares(n: int = 12, size: int = 64) -> np.ndarray:
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        out[i, 24:40, i * 4:i * 4 + 16] = (40, 200, 90)
    return out


class FakeSound:
    """Stands in for the sounddevice module: remembers what it was asked to play."""

    def __init__(self):
        self.played: list[tuple[int, int]] = []
        self.stops = 0

    def play(self, samples, rate):
        self.played.append((len(samples), rate))

    def stop(self):
        self.stops += 1


@pytest.fixture
def no_sound(monkeypatch):
    monkeypatch.setattr(media_viewers, "load_sounddevice", lambda: (None, NO_SOUND))


@pytest.fixture
def fake_sound(monkeypatch):
    fake = FakeSound()
    monkeypatch.setattr(media_viewers, "load_sounddevice", lambda: (fake, ""))
    return fake


def make(qtbot, cls, media):
    viewer = cls()
    qtbot.addWidget(viewer)
    viewer.resize(480, 360)
    viewer.show()
    viewer.show_media(media)
    return viewer


def test_viewers_are_registered():
    assert VIEWERS[AudioMedia] is AudioViewer and VIEWERS[VideoMedia] is VideoViewer
    assert viewer_class(AudioMedia(tone(0.1), RATE)) is AudioViewer
    assert viewer_class(VideoMedia(frames=squares(2))) is VideoViewer


# -- audio -------------------------------------------------------------------------------------------
def test_audio_viewer_waveform_spectrogram_and_caption(qtbot, no_sound):
    samples = tone(0.5)
    viewer = make(qtbot, AudioViewer, AudioMedia(samples, RATE, title="a tone"))
    assert len(viewer.curves) == 1
    assert len(viewer.curves[0].xData) == len(samples) == len(viewer.curves[0].yData)
    assert viewer.curves[0].xData[-1] == pytest.approx((len(samples) - 1) / RATE)
    assert viewer.spec.shape[0] == 257 and viewer.spec_image.image is not None
    assert "a tone" in viewer.caption.text() and "0.50 s" in viewer.caption.text() and "mono" in viewer.caption.text()
    stereo = make(qtbot, AudioViewer, AudioMedia(np.stack([samples, samples], axis=1), RATE))
    assert len(stereo.curves) == 2 and "stereo" in stereo.caption.text()


def test_audio_play_disabled_with_the_reason_without_sound(qtbot, no_sound):
    viewer = make(qtbot, AudioViewer, AudioMedia(tone(0.3), RATE))
    assert not viewer.play_button.isEnabled()
    assert viewer.play_button.toolTip() == NO_SOUND
    viewer.play()  # does nothing, raises nothing
    assert not viewer.timer.isActive()


def test_audio_play_and_stop_with_sound(qtbot, fake_sound):
    viewer = make(qtbot, AudioViewer, AudioMedia(tone(0.3), RATE))
    assert viewer.play_button.isEnabled()
    qtbot.mouseClick(viewer.play_button, media_viewers.Qt.MouseButton.LeftButton)
    assert fake_sound.played == [(int(0.3 * RATE), RATE)]
    assert viewer.stop_button.isEnabled() and viewer.playhead.isVisible()
    qtbot.waitUntil(lambda: not viewer.timer.isActive(), timeout=3000)  # stops at the end by itself
    assert fake_sound.stops >= 1 and not viewer.stop_button.isEnabled()


def test_audio_save_to_writes_a_wav(qtbot, tmp_path, no_sound):
    samples = tone(0.25)
    viewer = make(qtbot, AudioViewer, AudioMedia(samples, RATE, title="t"))
    with qtbot.waitSignal(viewer.saved, timeout=5000) as sig:
        out = viewer.save_to(str(tmp_path / "sound"))  # the suffix is added
    assert out == tmp_path / "sound.wav" and sig.args == [str(out)]
    back = load_wav(out)
    assert back.sample_rate == RATE and np.max(np.abs(back.samples - samples)) <= 1 / 32767
    with qtbot.waitSignal(viewer.failed, timeout=5000):
        assert viewer.save_to(str(out / "inside-a-file.wav")) is None  # its folder is a file
    assert viewer.status.text().startswith("Could not save")


def test_audio_viewer_shows_bad_media_as_a_message(qtbot, no_sound):
    viewer = make(qtbot, AudioViewer, AudioMedia(np.zeros(0), RATE))
    assert "cannot show this sound" in viewer.caption.text() and not viewer.save_button.isEnabled()


# -- video -------------------------------------------------------------------------------------------
def video(n: int = 12, with_audio: bool = True) -> VideoMedia:
    return VideoMedia(frames=squares(n), fps=FPS, audio=AudioMedia(tone(n / FPS), RATE) if with_audio else None,
                      title="squares")


def test_video_next_prev_and_seek(qtbot, no_sound):
    viewer = make(qtbot, VideoViewer, video(12))
    assert viewer.counter.text() == "frame 1 / 12 · 0:00.00"
    assert viewer.picture.pixmap() is not None and not viewer.picture.pixmap().isNull()
    qtbot.mouseClick(viewer.next_button, media_viewers.Qt.MouseButton.LeftButton)
    assert viewer.index == 1 and viewer.counter.text() == "frame 2 / 12 · 0:00.04"
    qtbot.mouseClick(viewer.prev_button, media_viewers.Qt.MouseButton.LeftButton)
    qtbot.mouseClick(viewer.prev_button, media_viewers.Qt.MouseButton.LeftButton)  # stays at the first
    assert viewer.index == 0
    viewer.slider.setValue(10)
    assert viewer.index == 10 and viewer.counter.text() == "frame 11 / 12 · 0:00.40"
    viewer.step(5)
    assert viewer.index == 11 and viewer.slider.value() == 11
    assert "12 frames at 25 fps" in viewer.caption.text() and "with sound" in viewer.caption.text()


def test_video_plays_silently_without_sound(qtbot, no_sound):
    viewer = make(qtbot, VideoViewer, video(25))
    assert NO_SOUND in viewer.play_button.toolTip()
    viewer.play()
    assert viewer.playing and viewer.play_button.text() == "Pause"
    qtbot.wait(300)
    assert viewer.index >= 2
    viewer.toggle_play()
    stopped_at = viewer.index
    qtbot.wait(100)
    assert not viewer.playing and viewer.index == stopped_at
    viewer.play()
    qtbot.waitUntil(lambda: not viewer.playing, timeout=5000)  # stops at the last frame
    assert viewer.index == 24


def test_video_starts_the_sound_at_the_frame_shown(qtbot, fake_sound):
    viewer = make(qtbot, VideoViewer, video(20))
    assert viewer.play_button.toolTip().startswith("Play with sound")
    viewer.show_frame(10)
    viewer.play()
    total = int(20 / FPS * RATE)
    assert fake_sound.played == [(total - int(10 / FPS * RATE), RATE)]
    viewer.pause()
    assert fake_sound.stops >= 1


def test_video_save_to_writes_an_mp4_that_reads_back(qtbot, tmp_path, no_sound):
    media = video(10)
    viewer = make(qtbot, VideoViewer, media)
    with qtbot.waitSignal(viewer.saved, timeout=30_000):
        out = viewer.save_to(str(tmp_path / "clip"))
    assert out == tmp_path / "clip.mp4"
    frames, fps = read_frames(out)
    assert frames.shape == media.frames.shape and fps == pytest.approx(FPS)


def test_video_from_a_file_with_its_sound(qtbot, tmp_path, no_sound):
    path = save_video(video(8), tmp_path / "v.mp4")
    viewer = viewer_for(VideoMedia(path=str(path), title="from file"))
    qtbot.addWidget(viewer)
    assert isinstance(viewer, VideoViewer) and viewer.frame_count == 8 and viewer.audio is not None
    assert "with sound" in viewer.caption.text()
    silent = make(qtbot, VideoViewer, video(4, with_audio=False))
    assert "no sound" in silent.caption.text() and "has no sound" in silent.play_button.toolTip()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"nope" * 50)
    bad = make(qtbot, VideoViewer, VideoMedia(path=str(broken)))
    assert "cannot show this video" in bad.caption.text() and not bad.play_button.isEnabled()
