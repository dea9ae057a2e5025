"""Sound and video media: WAV files, spectrograms, MP4 files with sound, and every media type as session JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slimgui.core.errors import SlimError
from slimgui.core.media import (
    MAX_INLINE_BYTES,
    AudioMedia,
    ImageMedia,
    TableMedia,
    TextMedia,
    VideoMedia,
    audio_array,
    duration,
    extract_audio,
    load_wav,
    media_from_json,
    media_to_json,
    read_frames,
    save_video,
    save_wav,
    spectrogram,
    wav_bytes,
)

RATE = 16000


def tone(freq: float = 440.0, seconds: float = 0.5, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def moving_square(frames: int = 15, size: int = 64) -> np.ndarray:
    out = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        x = (i * 3) % (size - 16)
        out[i, 20:36, x:x + 16] = (230, 40, 40)
    return out


# -- audio -------------------------------------------------------------------------------------------
def test_wav_round_trip_mono_and_stereo(tmp_path):
    mono = AudioMedia(tone(), RATE, title="a")
    out = save_wav(mono, tmp_path / "a.wav")
    back = load_wav(out)
    assert back.sample_rate == RATE and back.samples.dtype == np.float32 and back.samples.shape == mono.samples.shape
    assert np.max(np.abs(back.samples - mono.samples)) <= 1 / 32767
    assert back.path == str(out) and back.title == "a"
    assert back.duration == pytest.approx(0.5)

    stereo = AudioMedia(np.stack([tone(440), tone(880, amp=1.0)], axis=1), RATE)
    back = load_wav(save_wav(stereo, tmp_path / "s.wav"))
    assert back.samples.shape == (RATE // 2, 2)
    assert np.max(np.abs(back.samples - stereo.samples)) <= 1 / 32767
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_audio_array_cleans_and_checks():
    arr = audio_array(AudioMedia(np.array([0.5, np.nan, np.inf, -np.inf, 3.0, -2.0]), 8000))
    assert arr.dtype == np.float32 and arr.tolist() == [0.5, 0.0, 1.0, -1.0, 1.0, -1.0]
    assert audio_array(AudioMedia(np.zeros((2, 100)), 8000)).shape == (100, 2)  # channels-first is turned
    assert audio_array(AudioMedia(np.zeros((100, 1)), 8000)).shape == (100,)
    assert audio_array(AudioMedia(np.array([32767, -32767], dtype=np.int16), 8000)).tolist() == [1.0, -1.0]
    for bad in (AudioMedia(np.zeros(0), 8000), AudioMedia(np.zeros((2, 2, 2)), 8000),
                AudioMedia(np.zeros(10), 0), AudioMedia(np.zeros(10), 44100.5), AudioMedia(["a"], 8000)):
        with pytest.raises(SlimError):
            audio_array(bad)


def test_save_wav_needs_the_suffix(tmp_path):
    with pytest.raises(SlimError, match=r"\.wav"):
        save_wav(AudioMedia(tone(), RATE), tmp_path / "a.mp3")


@pytest.mark.parametrize("cut", ["truncated", "header", "junk", "empty"])
def test_damaged_wav_is_a_slim_error(tmp_path, cut):
    data = wav_bytes(AudioMedia(tone(), RATE))
    data = {"truncated": data[: len(data) // 2], "header": data[:30], "junk": b"RIFF\x10\x00\x00\x00WAVEjunkjunk",
            "empty": b""}[cut]
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    with pytest.raises(SlimError) as info:
        load_wav(path)
    assert "bad.wav" in str(info.value) and info.value.hint


def test_load_wav_limits(tmp_path):
    path = save_wav(AudioMedia(tone(), RATE), tmp_path / "a.wav")
    with pytest.raises(SlimError, match="larger than"):
        load_wav(path, limit=1000)
    with pytest.raises(SlimError, match="does not exist"):
        load_wav(tmp_path / "missing.wav")
    with pytest.raises(SlimError, match="folder"):
        load_wav(tmp_path)


def test_spectrogram_peaks_at_the_tone():
    media = AudioMedia(tone(1000.0, seconds=0.5, amp=1.0), RATE)
    spec = spectrogram(media, n_fft=512)
    assert spec.dtype == np.float32
    assert spec.shape == (257, 1 + (RATE // 2 - 512) // 128)
    peak_hz = int(np.argmax(spec.mean(axis=1))) * RATE / 512
    assert abs(peak_hz - 1000.0) <= RATE / 512
    assert spec.max() == pytest.approx(0.0, abs=1.0)  # a full-scale sine peaks near 0 dB
    silent = spectrogram(AudioMedia(np.zeros(100, np.float32), RATE), n_fft=256, floor_db=-90)
    assert silent.shape == (129, 1) and np.all(silent == pytest.approx(-90.0))


# -- video -------------------------------------------------------------------------------------------
FPS = 25


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    frames = moving_square(15)
    sound = AudioMedia(tone(440, seconds=len(frames) / FPS), RATE)
    media = VideoMedia(frames=frames, fps=FPS, audio=sound, title="square")
    return save_video(media, tmp_path_factory.mktemp("video") / "square.mp4"), frames


def test_save_video_then_read_back(video_file):
    path, frames = video_file
    assert path.exists() and not list(path.parent.glob(".*.mp4"))
    got, fps = read_frames(path)
    assert got.shape == frames.shape and got.dtype == np.uint8
    assert fps == pytest.approx(FPS)
    assert np.abs(got.astype(int) - frames).mean() < 6  # lossy, but the same picture
    assert read_frames(path, max_frames=4)[0].shape[0] == 4
    assert duration(VideoMedia(path=str(path))) == pytest.approx(len(frames) / FPS, abs=1 / FPS)


def test_extract_audio_gives_the_sound_back(video_file):
    path, frames = video_file
    sound = extract_audio(path)
    assert isinstance(sound, AudioMedia) and sound.sample_rate == RATE
    assert sound.duration == pytest.approx(len(frames) / FPS, abs=1 / FPS)
    spec = spectrogram(sound)
    assert abs(int(np.argmax(spec.mean(axis=1))) * RATE / 512 - 440) <= RATE / 512


def test_video_without_sound_and_odd_size(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 33, 47, 3), dtype=np.uint8)
    path = save_video(VideoMedia(frames=frames, fps=10), tmp_path / "odd.mp4")
    got, fps = read_frames(path)
    assert got.shape[0] == 5 and fps == pytest.approx(10) and got.shape[1:3] == (34, 48)  # padded to even
    with pytest.raises(SlimError, match="no sound"):
        extract_audio(path)


def test_save_video_from_a_file_copies_it(video_file, tmp_path):
    path, frames = video_file
    out = save_video(VideoMedia(path=str(path)), tmp_path / "copy.mp4")
    assert out.read_bytes() == path.read_bytes()


def test_video_errors_are_slim_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(SlimError, match="not a video"):
        read_frames(bad)
    with pytest.raises(SlimError):
        extract_audio(bad)
    with pytest.raises(SlimError, match="does not exist"):
        read_frames(tmp_path / "missing.mp4")
    with pytest.raises(SlimError, match=r"\.mp4"):
        save_video(VideoMedia(frames=moving_square(2)), tmp_path / "x.avi")
    with pytest.raises(SlimError, match="T×H×W×3"):
        save_video(VideoMedia(frames=np.zeros((2, 4, 4, 2), np.uint8)), tmp_path / "x.mp4")
    with pytest.raises(SlimError, match="frame rate"):
        save_video(VideoMedia(frames=moving_square(2), fps=0), tmp_path / "x.mp4")
    with pytest.raises(SlimError, match="neither"):
        save_video(VideoMedia(), tmp_path / "x.mp4")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.mp4"]  # no temporary file left behind


def test_frames_in_memory_read_directly():
    frames = moving_square(3)
    got, fps = read_frames(VideoMedia(frames=frames.astype(np.float32) / 255.0, fps=12.5))
    assert got.dtype == np.uint8 and np.array_equal(got, frames) and fps == 12.5


# -- JSON --------------------------------------------------------------------------------------------
def through_json(media):
    doc = media_to_json(media)
    return doc, media_from_json(json.loads(json.dumps(doc)))


def test_text_and_table_json_unchanged():
    doc, back = through_json(TextMedia("hello", title="t", meta={"seconds": 1.5, "x": float("nan")}))
    assert doc == {"type": "text", "text": "hello", "title": "t", "meta": {"seconds": 1.5, "x": None}}
    assert back == TextMedia("hello", title="t", meta={"seconds": 1.5, "x": None})
    doc, back = through_json(TableMedia(["a", "b"], [[1, 2.5], ["x", None]], title="tab"))
    assert doc == {"type": "table", "columns": ["a", "b"], "rows": [[1, 2.5], ["x", None]], "title": "tab"}
    assert back == TableMedia(["a", "b"], [[1, 2.5], ["x", None]], title="tab")
    assert media_to_json(object()) is None and media_from_json({"type": "hologram"}) is None
    assert media_from_json(None) is None


def test_image_json_round_trip_and_thumbnail():
    img = ImageMedia(moving_square(1)[0], title="sq", tiles=[{"label": "seed 0", "box": [0, 0, 64, 64]}],
                     meta={"seeds": [0]})
    doc, back = through_json(img)
    assert "png" in doc and np.array_equal(back.image, img.image)
    assert back.tiles == img.tiles and back.meta == img.meta and back.title == "sq"
    noise = np.random.default_rng(1).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    doc, back = through_json(ImageMedia(noise, tiles=[{"label": "a", "box": [0, 0, 512, 512]}]))
    assert doc["thumbnail"] and doc["size"] == [512, 512] and len(json.dumps(doc)) < 2 * MAX_INLINE_BYTES
    assert back.image.shape == (256, 256, 3) and back.tiles[0]["box"] == [0, 0, 256, 256]


def test_audio_json_inline_path_and_omitted(tmp_path):
    short = AudioMedia(tone(), RATE, title="short", meta={"seed": 3})
    doc, back = through_json(short)
    assert "wav" in doc and back.sample_rate == RATE and back.title == "short" and back.meta == {"seed": 3}
    assert np.max(np.abs(back.samples - short.samples)) <= 1 / 32767
    long = AudioMedia(tone(seconds=10.0), RATE, title="long")
    doc, back = through_json(long)
    assert doc["omitted"] is True and "wav" not in doc
    assert isinstance(back, TextMedia) and back.meta == {"omitted": "audio"} and back.title == "long"
    on_disk = load_wav(save_wav(long, tmp_path / "long.wav"))
    doc, back = through_json(on_disk)
    assert doc["path"] == str(tmp_path / "long.wav") and "wav" not in doc
    assert isinstance(back, AudioMedia) and back.samples.shape == long.samples.shape
    (tmp_path / "long.wav").unlink()
    assert media_from_json(doc).meta["omitted"] == "audio"  # the file went away: said, not raised


def test_video_json_path_and_omitted(video_file):
    path, frames = video_file
    doc, back = through_json(VideoMedia(path=str(path), fps=FPS, title="v", meta={"a": 1}))
    assert doc == {"type": "video", "title": "v", "meta": {"a": 1}, "fps": 25.0, "path": str(path)}
    assert back == VideoMedia(path=str(path), fps=25.0, title="v", meta={"a": 1})
    doc, back = through_json(VideoMedia(frames=frames, fps=FPS, title="mem"))
    assert doc["omitted"] is True and doc["frames"] == len(frames)
    assert isinstance(back, TextMedia) and back.meta == {"omitted": "video"}


def test_damaged_json_media_is_a_slim_error():
    with pytest.raises(SlimError):
        media_from_json({"type": "audio", "wav": "!!not base64!!"})
    with pytest.raises(SlimError):
        media_from_json({"type": "image", "png": "aGVsbG8="})
