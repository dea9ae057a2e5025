"""Forms built from options schemas (slimgui.gui.forms), on schemas declared here."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox  # noqa: E402

from slimgui.core.errors import SlimError  # noqa: E402
from slimgui.core.options import option  # noqa: E402
from slimgui.gui import forms  # noqa: E402
from slimgui.gui.forms import INT_MAX, OptionsForm, SciSpinBox, form_for  # noqa: E402


@dataclass
class Alpha:
    rank: int = option(8, label="rank", help="LoRA rank", lo=1, hi=4096)
    above: int = option(3, label="above zero", lo=0, lo_open=True, hi=10, hi_open=True)
    free: int = option(0, label="free")
    dropout: float = option(0.05, label="dropout", lo=0.0, hi=0.9, step=0.05)
    weight: float = option(1.0, label="weight", lo=0.0, lo_open=True)
    lr: float = option(1e-4, label="learning rate", lo=0.0, lo_open=True, hi=1.0, log=True)
    mode: str = option("fp16", label="mode", choices=(("fp32", "full"), ("fp16", "half"), ("int8", "8-bit")))
    name: str = option("run", label="name")
    seq_len: int | None = option(None, label="length", lo=1, hi=100_000, none_label="the model's own")
    targets: list[str] | None = option(None, label="targets", none_label="every linear layer")
    layers: list[int] = option([1, 2], label="layers", lo=0)
    data: str = option("", label="data", path="file", filter="Text (*.txt)")
    merge: bool = option(True, label="merge", negate="--keep-adapter")
    seed: int = option(0, label="seed", advanced=True)
    secret: str = option("kept", label="secret", gui=False)


@dataclass
class Beta:
    steps: int = option(100, label="steps", lo=1)
    out: str = option("", label="output folder", path="folder")
    scale: float | None = option(None, label="scale", lo=0.0, hi=2.0, none_label="auto")
    bits: int = option(8, label="bits", choices=(4, 8))


@pytest.fixture
def form(qtbot):
    f = OptionsForm([("Alpha", Alpha), ("Beta", Beta), ("Nothing", None)])
    qtbot.addWidget(f)
    return f


def test_widgets_ranges_and_defaults(form):
    rank = form.widget("rank")
    assert isinstance(rank, QSpinBox) and (rank.minimum(), rank.maximum(), rank.value()) == (1, 4096, 8)
    above = form.widget("above")
    assert (above.minimum(), above.maximum()) == (1, 9)  # open bounds
    free = form.widget("free")
    assert (free.minimum(), free.maximum()) == (-INT_MAX, INT_MAX)
    dropout = form.widget("dropout")
    assert isinstance(dropout, QDoubleSpinBox) and not isinstance(dropout, SciSpinBox)
    assert (dropout.minimum(), dropout.maximum(), dropout.singleStep(), dropout.decimals()) == (0.0, 0.9, 0.05, 2)
    assert dropout.value() == pytest.approx(0.05)
    assert form.widget("weight").minimum() > 0
    lr = form.widget("lr")
    assert isinstance(lr, SciSpinBox) and lr.text() == "0.0001" and lr.textFromValue(3e-5) == "3e-05"
    lr.stepBy(1)
    assert lr.value() == pytest.approx(2e-4)
    lr.stepBy(-1)
    assert lr.value() == pytest.approx(1e-4)
    mode = form.widget("mode")
    assert isinstance(mode, QComboBox)
    assert [mode.itemText(i) for i in range(mode.count())] == ["full", "half", "8-bit"]
    assert mode.currentData() == "fp16"
    assert isinstance(form.widget("name"), QLineEdit) and form.widget("name").text() == "run"
    seq = form.widget("seq_len")
    assert isinstance(seq, QSpinBox) and seq.text() == "the model's own" and seq.value() == seq.minimum() == 0
    targets = form.widget("targets")
    assert targets.text() == "" and targets.placeholderText() == "every linear layer"
    assert form.widget("layers").text() == "1, 2"
    merge = form.widget("merge")
    assert isinstance(merge, QCheckBox) and merge.isChecked()
    bits = form.widget("bits")
    assert isinstance(bits, QComboBox) and bits.currentData() == 8
    assert "LoRA rank" in rank.toolTip() and "1-4,096" in rank.toolTip()
    with pytest.raises(KeyError):
        form.widget("secret")  # gui=False: no row
    assert not form.row_visible("secret")
    assert form.values(0) == Alpha() and form.values(Beta) == Beta() and form.values(2) is None


def test_round_trip_and_none(form):
    a = Alpha(rank=16, above=5, free=-7, dropout=0.1, weight=2.5, lr=3e-5, mode="int8", name="x", seq_len=512,
              targets=["q_proj", "v_proj"], layers=[0, 3, 9], data="/tmp/a.txt", merge=False, seed=4,
              secret="other")
    form.set_values(a)
    assert form.values(Alpha) == a
    form.set_values({"seq_len": None, "targets": None, "unknown": 1, "scale": 1.25})
    got = form.values(Alpha)
    assert got.seq_len is None and got.targets is None and got.rank == 16
    assert form.widget("seq_len").text() == "the model's own"
    assert form.values(Beta).scale == pytest.approx(1.25)
    form.set_values({"scale": None})
    assert form.values(Beta).scale is None and form.widget("scale").text() == "auto"
    flat = form.all_values()
    assert flat["rank"] == 16 and flat["steps"] == 100 and flat["secret"] == "other"
    one = form_for(Beta, {"steps": 7})
    assert one.values().steps == 7
    one.deleteLater()


def test_bad_values_name_the_label(form):
    form.widget("layers").setText("1, two")
    with pytest.raises(SlimError, match="layers"):
        form.values(Alpha)
    with pytest.raises(SlimError, match="layers"):
        form.all_values()
    form.widget("layers").setText("-1")
    with pytest.raises(SlimError, match="layers"):
        form.values(Alpha)
    form.widget("layers").setText("")  # empty: the default
    assert form.values(Alpha).layers == [1, 2]


def test_parts_more_and_changed(qtbot, form):
    form.show()
    assert form.row_visible("rank") and form.row_visible("steps")
    assert not form.row_visible("seed")  # advanced: under a collapsed "More"
    more = form.more_button(0)
    assert more is not None and form.more_button(Beta) is None
    more.click()
    assert form.row_visible("seed") and form.widget("seed").isVisible()
    form.set_part_visible(1, False)
    assert not form.row_visible("steps") and not form.widget("steps").isVisible()
    assert "steps" not in form.all_values(visible_only=True)
    form.set_part_visible(Beta, True)
    assert form.row_visible("steps")
    form.set_row_visible("name", False)
    assert not form.row_visible("name") and not form.widget("name").isVisible()

    with qtbot.waitSignal(form.changed):
        form.widget("rank").setValue(32)
    with qtbot.waitSignal(form.fieldChanged) as blocker:
        form.widget("merge").setChecked(False)
    assert blocker.args == ["merge"]
    with qtbot.waitSignal(form.changed):
        form.widget("mode").setCurrentIndex(0)
    with qtbot.waitSignal(form.changed):
        form.widget("targets").setText("a")
    seen = []
    form.changed.connect(lambda: seen.append(1))
    form.set_values({"rank": 64, "steps": 5})
    assert seen == [1]  # once per set_values
    form.set_values({"rank": 64})
    assert seen == [1]  # nothing changed


def test_browse_uses_the_chooser(qtbot, form, monkeypatch):
    asked = []

    def fake(parent, kind, caption, start, filter=""):
        asked.append((kind, caption, filter))
        return "/data/corpus.txt" if kind == "file" else "/out"

    monkeypatch.setattr(forms, "choose_path", fake)
    qtbot.mouseClick(form.browse_button("data"), Qt.MouseButton.LeftButton)
    assert form.values(Alpha).data == "/data/corpus.txt"
    form.browse_button("out").click()
    assert form.values(Beta).out == "/out"
    assert asked == [("file", "data", "Text (*.txt)"), ("folder", "output folder", "")]
    monkeypatch.setattr(forms, "choose_path", lambda *a, **k: None)  # cancelled: unchanged
    form.browse_button("out").click()
    assert form.values(Beta).out == "/out"


def test_set_limit_clamps(form):
    form.set_values({"seq_len": 5000, "rank": 4000})
    form.set_limit("seq_len", 2048)
    seq = form.widget("seq_len")
    assert seq.maximum() == 2048 and form.values(Alpha).seq_len == 2048
    seq.setValue(99_999)
    assert seq.value() == 2048
    form.set_limit("seq_len", 10**9)  # never above the declared maximum
    assert seq.maximum() == 100_000
    form.set_limit("seq_len", None)
    assert seq.maximum() == 100_000
    form.set_limit("layers", 5)  # a list: checked when read
    form.set_values({"layers": [1, 9]})
    with pytest.raises(SlimError, match="layers"):
        form.values(Alpha)


@dataclass
class Lengths:
    window: int = option(128, label="window", lo=2, hi=100_000, context=True)
    sweep: list[int] = option([64, 512], label="lengths", lo=2, hi=100_000, context=True)
    steps: int = option(10, label="steps", lo=1, hi=100_000)
    corpus: str = option("", label="corpus", path="file")


def test_context_limit_lowers_only_the_declared_lengths(qtbot):
    form = OptionsForm([("Lengths", Lengths)])
    qtbot.addWidget(form)
    form.set_context_limit(256)
    assert form.widget("window").maximum() == 256 and form.widget("steps").maximum() == 100_000
    with pytest.raises(SlimError, match="lengths"):
        form.values(Lengths)  # 512 is past the model's context of 256
    form.set_values({"sweep": [64, 128]})
    assert form.values(Lengths).sweep == [64, 128]
    form.set_context_limit(None)
    assert form.widget("window").maximum() == 100_000
    # labels are reached by name; a path field takes dropped files (the window fills fields marked pathDrop)
    assert form.label("window").text() == "window" and form.label("steps", Lengths).text() == "steps"
    assert form.widget("corpus").property("pathDrop") is True and not form.widget("steps").property("pathDrop")
    assert form.schema(0) is Lengths and form.part_count == 1


def test_conditions_hold_for_allowed_values():
    values = {"mode": "mixed", "flag": True}
    assert forms.condition_holds(None, values.get) and forms.condition_holds((), values.get)
    assert forms.condition_holds((("mode", ("int", "mixed")),), values.get)
    assert not forms.condition_holds((("mode", ("full",)),), values.get)
    assert forms.condition_holds({"mode": "mixed", "flag": True}, values.get)
    assert not forms.condition_holds({"mode": "mixed", "flag": False}, values.get)


def test_a_field_declared_for_some_values_of_another_is_enabled_only_then(qtbot):
    """A row whose option says ``when=((field, allowed values), ...)`` is enabled only while the other field
    holds one of them (e.g. a share that applies to one mode)."""
    import dataclasses as dc

    from slimgui.core.options import META_KEY, Opt

    @dc.dataclass(frozen=True)
    class WhenOpt(Opt):  # an Opt that declares the condition (the attribute the form reads)
        when: tuple = ()

    @dataclass
    class Modes:
        mode: str = option("full", label="mode", choices=("full", "half", "mixed"))
        share: float = dc.field(default=0.1, metadata={META_KEY: WhenOpt(label="share", lo=0.0, hi=1.0,
                                                                          when=(("mode", ("mixed",)),))})

    form = OptionsForm([(None, Modes)])
    qtbot.addWidget(form)
    share, mode = form.widget("share"), form.widget("mode")
    assert not share.isEnabled() and not form.label("share").isEnabled()
    mode.setCurrentIndex(mode.findData("mixed"))
    assert share.isEnabled() and form.label("share").isEnabled()
    form.set_values({"mode": "half"})
    assert not share.isEnabled() and form.values(0).share == 0.1  # its value is kept
