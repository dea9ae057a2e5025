"""The base of every media viewer, and the viewers of sound and video (:class:`AudioViewer`, :class:`VideoViewer`).

:mod:`slimgui.gui.viewers` re-exports :class:`MediaViewer` and registers these viewers in its ``VIEWERS``; they
live here so that neither file grows past a screenful of screens.

Sound is played with ``sounddevice`` (PortAudio).  It is imported lazily by :func:`load_sounddevice`: where the
PortAudio library or an output device is missing, the Play buttons are disabled (audio) or play silently (video)
with a tooltip that says why, and nothing else changes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.media import (
    AudioMedia,
    VideoMedia,
    audio_array,
    extract_audio,
    read_frames,
    save_video,
    save_wav,
    spectrogram,
)

from .colors import colormap

MAX_VIEW_BYTES = 2**30  # decoded frames the video viewer holds at most


class MediaViewer(QWidget):
    """Shows one piece of media; ``show_media`` replaces what it shows."""

    media_type: type | None = None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.media: Any = None
        self.caption = QLabel()
        self.caption.setObjectName("Hint")
        self.caption.setWordWrap(True)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    def show_media(self, media: Any) -> None:
        self.media = media

    def clear(self) -> None:
        self.media = None


def qimage_of(array: Any) -> QImage:
    """A QImage sharing nothing with ``array`` (an H×W grey or H×W×3 RGB uint8 array)."""
    h, w = array.shape[:2]
    if array.ndim == 2:
        return QImage(array.data, w, h, array.strides[0], QImage.Format.Format_Grayscale8).copy()
    return QImage(array.data, w, h, array.strides[0], QImage.Format.Format_RGB888).copy()


# -- sound output --------------------------------------------------------------------------------
_SOUND: tuple[Any, str] | None = None


def _probe_sound() -> tuple[Any, str]:
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        return None, f"No sound: the PortAudio library is missing ({exc}); install it (Debian: libportaudio2)"
    except ImportError:
        return None, "No sound: the sounddevice package is not installed (pip install sounddevice)"
    except Exception as exc:  # a broken install must not stop the app
        return None, f"No sound: sounddevice does not load ({exc})"
    try:
        sounddevice.query_devices(kind="output")
    except Exception as exc:
        return None, f"No sound: there is no sound output device ({exc})"
    return sounddevice, ""


def load_sounddevice() -> tuple[Any, str]:
    """``(sounddevice, "")`` when sound can be played here, else ``(None, why not)``; probed once."""
    global _SOUND  # a cache of what this machine has, not configuration
    if _SOUND is None:
        _SOUND = _probe_sound()
    return _SOUND


class SoundOut:
    """Plays samples from an offset, non-blocking; remembers when it started."""

    def __init__(self) -> None:
        self.playing = False

    def play(self, samples: Any, rate: int, offset_s: float = 0.0) -> str:
        """Start playing at ``offset_s``; "" on success, else why not."""
        self.stop()
        sd, why = load_sounddevice()
        if sd is None:
            return why
        start = max(0, int(round(offset_s * rate)))
        if start >= len(samples):
            return ""
        try:
            sd.play(samples[start:], rate)
        except Exception as exc:
            return f"Cannot play the sound: {exc}"
        self.playing = True
        return ""

    def stop(self) -> None:
        if self.playing:
            self.playing = False
            sd, _ = load_sounddevice()
            if sd is not None:
                try:
                    sd.stop()
                except Exception:
                    pass


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60.0)
    return f"{int(m)}:{s:05.2f}"


def _safe_name(title: str, default: str) -> str:
    name = (str(title or default).strip() or default)[:40]
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or default


class _SavingViewer(MediaViewer):
    """A viewer with a Save… button; ``save_to(path)`` does the writing (the button asks for the path)."""

    saved = Signal(str)  # where the file went
    failed = Signal(str)  # why it could not be written (one line)
    SUFFIX = ""
    FILTER = ""
    DEFAULT = "media"

    def __init__(self, parent: QWidget | None, save_text: str):
        super().__init__(parent)
        self.save_button = QPushButton(save_text)
        self.save_button.clicked.connect(self._save_clicked)
        self.save_button.setEnabled(False)
        self.status = QLabel()
        self.status.setObjectName("Hint")
        self.status.setWordWrap(True)
        self.last_dir: str | None = None

    def _save_clicked(self) -> None:
        if self.media is None:
            return
        start = str(Path(self.last_dir or Path.home()) / f"{_safe_name(self.media.title, self.DEFAULT)}{self.SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self, f"Save as {self.SUFFIX[1:].upper()}", start, self.FILTER)
        if path:
            self.save_to(path)

    def _write(self, path: str) -> Path:
        raise NotImplementedError

    def save_to(self, path: str) -> Path | None:
        """Write the media to ``path`` (the suffix added when missing); emits ``saved`` or ``failed``."""
        if self.media is None:
            self.failed.emit("nothing to save yet")
            return None
        if not str(path).lower().endswith(self.SUFFIX):
            path = f"{path}{self.SUFFIX}"
        try:
            out = self._write(path)
        except SlimError as exc:
            self.status.setText(f"Could not save: {exc.one_line()}")
            self.failed.emit(exc.one_line())
            return None
        self.last_dir = str(out.parent)
        self.status.setText(f"Saved to {out}")
        self.saved.emit(str(out))
        return out


def _style_plot(plot: pg.PlotWidget, left: str, bottom: str = "time (s)") -> None:
    item = plot.getPlotItem()
    item.setMenuEnabled(False)
    item.setLabel("left", left)
    item.setLabel("bottom", bottom)
    for axis in ("left", "bottom"):
        item.getAxis(axis).setTextPen("#374151")
        item.getAxis(axis).setPen("#9ca3af")


class AudioViewer(_SavingViewer):
    """A sound: its waveform (one curve per channel) over its spectrogram, Play / Stop, and "Save sound…" (WAV)."""

    media_type = AudioMedia
    SUFFIX = ".wav"
    FILTER = "WAV sound (*.wav)"
    DEFAULT = "sound"
    COLOURS = ("#2563eb", "#dc2626", "#059669", "#d97706")

    def __init__(self, parent: QWidget | None = None, save_text: str = "Save sound…"):
        super().__init__(parent, save_text)
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self.play)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.save_button.setToolTip("Write the sound as a 16-bit WAV file")
        bar = QHBoxLayout()
        bar.addWidget(self.caption, 1)
        for b in (self.play_button, self.stop_button, self.save_button):
            bar.addWidget(b)
        self.wave_plot = pg.PlotWidget(background="w")
        self.wave_plot.setMinimumHeight(110)
        _style_plot(self.wave_plot, "amplitude")
        self.wave_plot.setYRange(-1, 1)
        self.playhead = pg.InfiniteLine(angle=90, pen=pg.mkPen("#111827", width=1))
        self.playhead.setVisible(False)
        self.wave_plot.addItem(self.playhead)
        self.spec_plot = pg.PlotWidget(background="w")
        self.spec_plot.setMinimumHeight(110)
        _style_plot(self.spec_plot, "frequency (Hz)")
        self.spec_plot.setXLink(self.wave_plot)
        self.spec_image = pg.ImageItem()
        self.spec_image.setColorMap(colormap())
        self.spec_plot.addItem(self.spec_image)
        self._layout.addLayout(bar)
        self._layout.addWidget(self.wave_plot, 1)
        self._layout.addWidget(self.spec_plot, 1)
        self._layout.addWidget(self.status)
        self.curves: list[pg.PlotDataItem] = []
        self.samples: Any = None
        self.spec: Any = None
        self.sound = SoundOut()
        self._t0 = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(30)
        self.timer.timeout.connect(self._tick)

    def show_media(self, media: AudioMedia) -> None:
        self.stop()
        super().show_media(media)
        for c in self.curves:
            self.wave_plot.removeItem(c)
        self.curves = []
        self.status.clear()
        try:
            self.samples = audio_array(media)
            self.spec = spectrogram(media)
        except SlimError as exc:
            self.media = self.samples = None
            self.spec_image.clear()
            self.caption.setText(f"cannot show this sound: {exc.one_line()}")
            for b in (self.play_button, self.stop_button, self.save_button):
                b.setEnabled(False)
            return
        import numpy as np

        rate = int(media.sample_rate)
        n = self.samples.shape[0]
        seconds = n / rate
        t = np.arange(n, dtype=np.float64) / rate
        channels = self.samples[:, None] if self.samples.ndim == 1 else self.samples
        for ch in range(channels.shape[1]):
            curve = self.wave_plot.plot(t, channels[:, ch], pen=pg.mkPen(self.COLOURS[ch % len(self.COLOURS)], width=1))
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            self.curves.append(curve)
        self.wave_plot.setXRange(0, seconds, padding=0)
        top = float(self.spec.max())
        self.spec_image.setImage(self.spec.T, levels=(top - 80.0, top))  # (time, frequency): x is time
        self.spec_image.setRect(QRectF(0, 0, seconds, rate / 2))
        self.spec_plot.setYRange(0, rate / 2, padding=0)
        meta = media.meta or {}
        bits = [media.title] if media.title else []
        bits += [f"{seconds:.2f} s", f"{rate / 1000:g} kHz",
                 {1: "mono", 2: "stereo"}.get(channels.shape[1], f"{channels.shape[1]} channels")]
        if "seconds" in meta:
            bits.append(f"made in {meta['seconds']} s")
        self.caption.setText(" · ".join(str(b) for b in bits))
        self.save_button.setEnabled(True)
        sd, why = load_sounddevice()
        self.play_button.setEnabled(sd is not None)
        self.play_button.setToolTip("Play the sound" if sd is not None else why)

    def play(self) -> None:
        if self.samples is None:
            return
        why = self.sound.play(self.samples, int(self.media.sample_rate))
        if why:
            self.play_button.setEnabled(False)
            self.play_button.setToolTip(why)
            return
        self._t0 = time.monotonic()
        self.playhead.setValue(0)
        self.playhead.setVisible(True)
        self.stop_button.setEnabled(True)
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.sound.stop()
        self.playhead.setVisible(False)
        self.stop_button.setEnabled(False)

    def _tick(self) -> None:
        elapsed = time.monotonic() - self._t0
        if self.samples is None or elapsed >= self.samples.shape[0] / int(self.media.sample_rate):
            self.stop()
            return
        self.playhead.setValue(elapsed)

    def _write(self, path: str) -> Path:
        return save_wav(self.media, path)

    def clear(self) -> None:
        self.stop()
        super().clear()
        for c in self.curves:
            self.wave_plot.removeItem(c)
        self.curves = []
        self.samples = self.spec = None
        self.spec_image.clear()
        self.caption.clear()
        self.status.clear()
        self.save_button.setEnabled(False)

    def hideEvent(self, event) -> None:  # noqa: N802
        self.stop()
        super().hideEvent(event)


class VideoViewer(_SavingViewer):
    """A video: its frames with Play / Pause (at the video's frame rate, with its sound where sound works), a seek
    slider, previous / next frame (also ← / → and space), "frame 12 / 75 · 0:00.44", and "Save video…" (MP4).

    A video file is decoded whole when shown (previews are short; at most :data:`MAX_VIEW_BYTES` of frames)."""

    media_type = VideoMedia
    SUFFIX = ".mp4"
    FILTER = "MP4 video (*.mp4)"
    DEFAULT = "video"

    def __init__(self, parent: QWidget | None = None, save_text: str = "Save video…"):
        super().__init__(parent, save_text)
        self.save_button.setToolTip("Write the video with its sound as an MP4 file")
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(160, 120)
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.picture.setStyleSheet("background: #111827;")
        self.prev_button = QPushButton("‹")
        self.prev_button.setToolTip("Previous frame (←)")
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self.toggle_play)
        self.next_button = QPushButton("›")
        self.next_button.setToolTip("Next frame (→)")
        self.next_button.clicked.connect(lambda: self.step(1))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Go to a frame")
        self.slider.valueChanged.connect(self.seek)
        self.counter = QLabel()
        self.counter.setMinimumWidth(150)
        top = QHBoxLayout()
        top.addWidget(self.caption, 1)
        top.addWidget(self.save_button)
        controls = QHBoxLayout()
        for w in (self.prev_button, self.play_button, self.next_button):
            controls.addWidget(w)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.counter)
        self._layout.addLayout(top)
        self._layout.addWidget(self.picture, 1)
        self._layout.addLayout(controls)
        self._layout.addWidget(self.status)
        for key, slot in ((Qt.Key.Key_Left, lambda: self.step(-1)), (Qt.Key.Key_Right, lambda: self.step(1)),
                          (Qt.Key.Key_Space, self.toggle_play)):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        self.frames: Any = None
        self.fps = 25.0
        self.audio: AudioMedia | None = None
        self.audio_samples: Any = None
        self.index = 0
        self.playing = False
        self.sound = SoundOut()
        self._t0 = 0.0
        self._start = 0
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self._set_enabled(False)

    # -- showing -----------------------------------------------------------------------------------
    def _set_enabled(self, on: bool) -> None:
        for w in (self.prev_button, self.play_button, self.next_button, self.slider, self.save_button):
            w.setEnabled(on)

    @property
    def frame_count(self) -> int:
        return 0 if self.frames is None else len(self.frames)

    def show_media(self, media: VideoMedia) -> None:
        self.pause()
        super().show_media(media)
        self.status.clear()
        try:
            self.frames, self.fps = read_frames(media, limit_bytes=MAX_VIEW_BYTES)
        except SlimError as exc:
            self.media = self.frames = None
            self.picture.clear()
            self.counter.clear()
            self.caption.setText(f"cannot show this video: {exc.one_line()}")
            self._set_enabled(False)
            return
        self.audio, self.audio_samples = media.audio, None
        if self.audio is None and media.frames is None and media.path:
            try:
                self.audio = extract_audio(media.path)
            except SlimError:
                self.audio = None  # a video without sound (or one ffmpeg cannot read the sound of)
        if self.audio is not None:
            try:
                self.audio_samples = audio_array(self.audio)
            except SlimError:
                self.audio = None
        t, h, w = self.frames.shape[:3]
        meta = media.meta or {}
        bits = [media.title] if media.title else []
        bits += [f"{w}×{h} px", f"{t} frames at {self.fps:g} fps", _clock(t / self.fps),
                 "with sound" if self.audio is not None else "no sound"]
        if "seconds" in meta:
            bits.append(f"made in {meta['seconds']} s")
        self.caption.setText(" · ".join(str(b) for b in bits))
        self._set_enabled(True)
        self.slider.blockSignals(True)
        self.slider.setRange(0, t - 1)
        self.slider.blockSignals(False)
        sd, why = load_sounddevice()
        if self.audio is None:
            self.play_button.setToolTip("Play (this video has no sound) · space")
        elif sd is None:
            self.play_button.setToolTip(f"Plays without sound. {why} · space")
        else:
            self.play_button.setToolTip("Play with sound · space")
        self.show_frame(0)

    def counter_text(self, i: int) -> str:
        return f"frame {i + 1} / {self.frame_count} · {_clock(i / self.fps)}"

    def show_frame(self, i: int) -> None:
        if self.frames is None:
            return
        self.index = max(0, min(int(i), self.frame_count - 1))
        if self.slider.value() != self.index:
            self.slider.blockSignals(True)
            self.slider.setValue(self.index)
            self.slider.blockSignals(False)
        self.counter.setText(self.counter_text(self.index))
        self._render()

    def _render(self) -> None:
        if self.frames is None:
            return
        frame = self.frames[self.index]
        pixmap = QPixmap.fromImage(qimage_of(frame))
        size = self.picture.contentsRect().size()
        h, w = frame.shape[:2]
        scale = min(size.width() / w, size.height() / h)
        mode = Qt.TransformationMode.FastTransformation if scale >= 2 else Qt.TransformationMode.SmoothTransformation
        if scale > 0:
            pixmap = pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode)
        self.picture.setPixmap(pixmap)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._render()

    # -- moving ------------------------------------------------------------------------------------
    def step(self, delta: int) -> None:
        self.pause()
        self.show_frame(self.index + delta)

    def seek(self, i: int) -> None:
        self.show_frame(i)
        if self.playing:
            self._restart_clock()

    def toggle_play(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        if self.frames is None or self.playing:
            return
        if self.index >= self.frame_count - 1:
            self.show_frame(0)
        self.playing = True
        self.play_button.setText("Pause")
        self._restart_clock()
        self.timer.start(max(1, round(1000 / self.fps)))

    def _restart_clock(self) -> None:
        """Time (and the sound) start again from the frame shown."""
        self._t0, self._start = time.monotonic(), self.index
        if self.audio_samples is not None:
            why = self.sound.play(self.audio_samples, int(self.audio.sample_rate), self.index / self.fps)
            if why:
                self.play_button.setToolTip(f"Plays without sound. {why} · space")

    def pause(self) -> None:
        self.timer.stop()
        self.sound.stop()
        self.playing = False
        self.play_button.setText("Play")

    def _tick(self) -> None:
        i = self._start + int((time.monotonic() - self._t0) * self.fps)
        if i >= self.frame_count:
            self.show_frame(self.frame_count - 1)
            self.pause()
        elif i != self.index:
            self.show_frame(i)

    # -- the rest ----------------------------------------------------------------------------------
    def _write(self, path: str) -> Path:
        return save_video(self.media, path)

    def clear(self) -> None:
        self.pause()
        super().clear()
        self.frames = self.audio = self.audio_samples = None
        self.picture.clear()
        self.counter.clear()
        self.caption.clear()
        self.status.clear()
        self._set_enabled(False)

    def hideEvent(self, event) -> None:  # noqa: N802
        self.pause()
        super().hideEvent(event)
