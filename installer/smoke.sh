#!/usr/bin/env bash
# Smoke test of the Linux desktop bundle, run by `make installer` after the build.
#
#   installer/smoke.sh [ARCHIVE]          default: dist/SlimGUI-VERSION-linux-ARCH.tar.gz
#   installer/smoke.sh --expected-plugins the entry-point names of pyproject's slimgui.plugins group (one a line)
#
# It unpacks the archive into a fresh folder under /tmp and runs everything there, the way a person would after a
# download: with a clean environment (PATH without the project's .venv, PYTHONPATH unset, PYTHONNOUSERSITE=1, a fresh
# HOME so no cache or settings of an earlier run are used) and, where it may (root and `unshare`), with the project's
# folder (sources, .venv and all) hidden under an empty tmpfs in a private mount namespace, so nothing of the build
# machine's Python can be reached.  It checks:
#   - the bundle's files: the executable, launcher, desktop entry, icon, README, the built-in plugins' list, every
#     shipped demo model; and that no test or build tool, C/C++ header, static library or test folder is inside;
#   - `slimgui plugins --json`: every entry point of pyproject is listed and loads (none broken);
#   - the app starts offscreen and draws its window (screenshot), empty and on the demo model (analysed);
#   - the CLI's `inspect`, `analyze --criterion bi` and `prune` on the demo, then opens the result (`inspect`, `eval`
#     and the app's screenshot of it);
#   - `inspect` of every other shipped demo (each family's lazily imported code is in the bundle);
#   - a third-party plugin installed into the user plugin folder is found and its criterion runs;
#   - bad input gives one line on stderr and exit code 2.
# Fails (exit 1) at the first missing thing, naming it.  Prints the start-up time and the bundle's size.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

expected_plugins() {  # pyproject's [project.entry-points."slimgui.plugins"] names
    awk '/^\[project\.entry-points\."slimgui\.plugins"\]/ {on = 1; next} /^\[/ {on = 0}
         on && /=/ {sub(/[ \t]*=.*/, ""); gsub(/[ \t"]/, ""); if ($0 != "") print}' "$1/pyproject.toml" | sort
}

fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
ok() { echo "smoke: ok: $*"; }

if [ "${1:-}" = "--expected-plugins" ]; then
    expected_plugins "$ROOT"
    exit 0
fi

if [ "${1:-}" != "--inner" ]; then
    # -- outside: unpack, then run the checks in a clean environment with the project out of reach -------------
    VERSION="$(awk -F'"' '/^version *=/ {print $2; exit}' "$ROOT/pyproject.toml")"
    ARCHIVE="${1:-$ROOT/dist/SlimGUI-$VERSION-linux-$(uname -m).tar.gz}"
    [ -f "$ARCHIVE" ] || fail "no archive $ARCHIVE (run \`make installer\`)"
    ARCHIVE="$(cd "$(dirname "$ARCHIVE")" && pwd)/$(basename "$ARCHIVE")"
    WORK="$(mktemp -d /tmp/slimgui-smoke.XXXXXX)"
    echo "smoke: unpacking $(basename "$ARCHIVE") ($(du -h "$ARCHIVE" | cut -f1)) into $WORK"
    tar -xzf "$ARCHIVE" -C "$WORK"
    expected_plugins "$ROOT" > "$WORK/expected-plugins.txt"
    cp "${BASH_SOURCE[0]}" "$WORK/smoke.sh"
    mkdir -p "$WORK/home"
    # the Python installation the build environment was made from (its stdlib is not the bundle's to use)
    PYBASE=""
    [ -x "$ROOT/.venv/bin/python" ] && PYBASE="$("$ROOT/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')"
    CLEAN=(env -i "HOME=$WORK/home" "PATH=/usr/local/bin:/usr/bin:/bin" "LANG=C.UTF-8" "QT_QPA_PLATFORM=offscreen"
           "PYTHONNOUSERSITE=1" "OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}" "SLIMGUI_SMOKE_HIDE=$ROOT"
           "SLIMGUI_SMOKE_HIDE_PYTHON=$PYBASE")
    cd "$WORK"
    rc=0
    if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
        "${CLEAN[@]}" unshare -m --propagation private bash "$WORK/smoke.sh" --inner "$WORK" hide || rc=$?
    else
        echo "smoke: note: cannot hide $ROOT (needs root and unshare); running from $WORK with a clean environment"
        "${CLEAN[@]}" bash "$WORK/smoke.sh" --inner "$WORK" || rc=$?
    fi
    if [ "$rc" -eq 0 ]; then  # the screenshots stay beside the archive; the unpacked copy goes
        mkdir -p "$(dirname "$ARCHIVE")/smoke"
        cp "$WORK"/out/*.png "$(dirname "$ARCHIVE")/smoke/" 2>/dev/null || true
        rm -rf "$WORK"
    else
        echo "smoke: the unpacked bundle and the commands' output are kept in $WORK" >&2
    fi
    exit $rc
fi

# -- inside: the checks ---------------------------------------------------------------------------------------------
WORK="$2"
cd "$WORK"
if [ "${3:-}" = "hide" ]; then
    mount -t tmpfs -o ro,size=1m none "$SLIMGUI_SMOKE_HIDE" || fail "could not hide $SLIMGUI_SMOKE_HIDE"
    [ ! -e "$SLIMGUI_SMOKE_HIDE/.venv" ] && [ ! -e "$SLIMGUI_SMOKE_HIDE/slimgui" ] || fail "the project is still reachable"
    ok "the project folder $SLIMGUI_SMOKE_HIDE (sources and .venv) is hidden from this run"
    if [ -n "${SLIMGUI_SMOKE_HIDE_PYTHON:-}" ] && [ -d "$SLIMGUI_SMOKE_HIDE_PYTHON" ] && [ "$SLIMGUI_SMOKE_HIDE_PYTHON" != / ] \
       && [ "$SLIMGUI_SMOKE_HIDE_PYTHON" != /usr ]; then
        mount -t tmpfs -o ro,size=1m none "$SLIMGUI_SMOKE_HIDE_PYTHON" || fail "could not hide $SLIMGUI_SMOKE_HIDE_PYTHON"
        ok "the build's Python installation $SLIMGUI_SMOKE_HIDE_PYTHON is hidden too"
    fi
fi
[ -z "${PYTHONPATH:-}" ] && [ -z "${VIRTUAL_ENV:-}" ] || fail "the environment is not clean"
case ":$PATH:" in *venv*) fail "PATH reaches a virtual environment: $PATH";; esac

B="$WORK/SlimGUI"
I="$B/_internal"
SLIM="$B/slimgui"
OUT="$WORK/out"
mkdir -p "$OUT"

# 1. the files -----------------------------------------------------------------------------------------------------
for f in slimgui SlimGUI install-desktop.sh slimgui.desktop slimgui.png slimgui.svg README.md VERSION \
         _internal/slimgui-entry-points.txt _internal/README.md _internal/resources/style.qss; do
    [ -e "$B/$f" ] || fail "missing in the bundle: $f"
done
[ -x "$SLIM" ] && [ -x "$B/SlimGUI" ] || fail "the executables are not executable"
for demo in llm diffusion vit gan voice; do
    [ -d "$I/resources/demo/$demo" ] || fail "missing demo model: resources/demo/$demo"
done
ok "executable, launcher, desktop entry, icon, README, plugin list and demo models are in the bundle"
bad=""
for tool in pytest _pytest pytestqt ruff importlinter grimp PyInstaller _pyinstaller_hooks_contrib pip setuptools \
            wheel tkinter torch/include torch/test torch/share; do
    [ -e "$I/$tool" ] && bad="$bad $tool"
done
[ -z "$bad" ] || fail "test/build tools or build-time files in the bundle:$bad"
junk="$(find "$I" \( -name '*.a' -o -name '*.h' -o -name '*.hpp' -o -type d \( -name tests -o -name test \) \) -print | head -5)"
[ -z "$junk" ] || fail "headers, static libraries or test folders in the bundle: $junk"
ok "no test or build tools, headers, static libraries or test folders"
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$B/slimgui.desktop" || fail "slimgui.desktop does not validate"
    ok "slimgui.desktop validates"
fi
grep -q '^Exec=slimgui gui %f$' "$B/slimgui.desktop" && grep -q '^Icon=slimgui$' "$B/slimgui.desktop" \
    || fail "slimgui.desktop does not start \`slimgui gui\` with the slimgui icon"

last_json() { tail -n 1 "$1"; }
json_has() {  # FILE PATTERN: the last line (the JSON result) holds PATTERN
    last_json "$1" | grep -q -- "$2" || fail "$(basename "$1" .out): no '$2' in: $(last_json "$1" | cut -c1-300)"
}
run() {  # NAME ARGS...: the bundled CLI, output to out/NAME.out/.err; fails with its stderr
    local name="$1"; shift
    "$SLIM" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" || fail "slimgui $* (exit $?): $(tail -n 3 "$OUT/$name.err")"
}
seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(seconds)" 'BEGIN {printf "%.2f", b - a}'; }

# 2. the plugins ---------------------------------------------------------------------------------------------------
run plugins plugins --json
while read -r name; do
    last_json "$OUT/plugins.out" | grep -q "\"name\": \"$name\", \"source\": [^,]*, \"status\": \"ok\"" \
        || fail "plugin '$name' (an entry point in pyproject.toml) is not listed as ok: $(last_json "$OUT/plugins.out" | cut -c1-400)"
done < "$WORK/expected-plugins.txt"
! last_json "$OUT/plugins.out" | grep -q '"status": "broken"' || fail "a plugin is broken: $(grep -o '"error": "[^"]*"' "$OUT/plugins.out" | head -3)"
ok "slimgui plugins: $(paste -sd' ' "$WORK/expected-plugins.txt") all listed and ok"

# 3. the app, offscreen --------------------------------------------------------------------------------------------
png_ok() {  # FILE: a PNG of at least 20 kB
    [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = "211PNG" ] && [ "$(stat -c %s "$1")" -gt 20000 ] \
        || fail "no screenshot (or an empty one): $1"
}
drawn() {  # T0 PNG: seconds from T0 to the moment the window's screenshot was written (its mtime)
    awk -v a="$1" -v b="$(stat -c %.3Y "$2")" 'BEGIN {printf "%.2f", b - a}'
}
t_drawn=(); t_exit=()
for i in 1 2 3; do  # the files were just unpacked: all three starts read them from the page cache (a warm start)
    t0="$(seconds)"
    "$B/SlimGUI" --screenshot "$OUT/empty$i.png" > "$OUT/gui-empty$i.out" 2>&1 \
        || fail "the app did not start: $(tail -n 3 "$OUT/gui-empty$i.out")"
    t_exit+=("$(elapsed "$t0")")
    png_ok "$OUT/empty$i.png"
    t_drawn+=("$(drawn "$t0" "$OUT/empty$i.png")")
done
t_empty="${t_drawn[0]}"; t_empty2="${t_drawn[2]}"
ok "the app starts and draws its window: screenshot written ${t_drawn[*]}s after start (runs 1-2-3; exit at ${t_exit[*]}s; the screenshot waits 0.55s for the layout to settle)"
t0="$(seconds)"
"$B/SlimGUI" demo:llm --screenshot "$OUT/demo.png" > "$OUT/gui-demo.out" 2>&1 || fail "the app failed on the demo: $(tail -n 3 "$OUT/gui-demo.out")"
png_ok "$OUT/demo.png"
ok "the app opens the demo model and analyses it: screenshot in $(elapsed "$t0")s"

# 4. the CLI on the demo -------------------------------------------------------------------------------------------
run inspect inspect demo:llm --json
json_has "$OUT/inspect.out" '"family": "llm"'
run analyze analyze demo:llm --criterion bi --out "$OUT/scores.json" --json
json_has "$OUT/analyze.out" '"criterion": "bi"'
[ -s "$OUT/scores.json" ] || fail "analyze wrote no scores file"
run prune prune demo:llm --scores "$OUT/scores.json" --count 3 --out "$OUT/pruned" --json
json_has "$OUT/prune.out" '"removed": \['
for f in config.json model.safetensors tokenizer.json slimgui_plan.json; do
    [ -s "$OUT/pruned/$f" ] || fail "the pruned model lacks $f"
done
ok "inspect, analyze --criterion bi and prune --count 3 on the demo"
run inspect-pruned inspect "$OUT/pruned" --json
blocks="$(grep -o '"kind": "block"' "$OUT/inspect-pruned.out" | wc -l)"
[ "$blocks" -eq 9 ] || fail "the pruned model should have 9 of 12 blocks, inspect shows $blocks"
run eval-pruned eval "$OUT/pruned" --max-tokens 2000 --json
json_has "$OUT/eval-pruned.out" 'perplexity'
"$B/SlimGUI" "$OUT/pruned" --screenshot "$OUT/pruned.png" > "$OUT/gui-pruned.out" 2>&1 || fail "the app failed on the pruned model: $(tail -n 3 "$OUT/gui-pruned.out")"
png_ok "$OUT/pruned.png"
ok "the result opens: inspect (9 blocks), eval ($(grep -o '"perplexity": [0-9.]*' "$OUT/eval-pruned.out" | head -1)), the app"

# 5. every other shipped demo (each family's lazily imported code) -------------------------------------------------
for demo in $(ls "$I/resources/demo"); do
    [ "$demo" = llm ] && continue
    run "inspect-$demo" inspect "demo:$demo" --json
    json_has "$OUT/inspect-$demo.out" '"units"'
done
ok "inspect on every other shipped demo: $(ls "$I/resources/demo" | grep -v '^llm$' | paste -sd' ')"

# 6. a third-party plugin in the user plugin folder ----------------------------------------------------------------
PLUG="$HOME/.local/share/slimgui/plugins"
mkdir -p "$PLUG/smoke_plugin-0.1.dist-info"
cat > "$PLUG/smoke_plugin.py" <<'PY'
"""A third party's criterion, installed into the bundle's user plugin folder (as `pip install --target` does)."""
from slimgui.core.plugins import CriterionSpec, Plugin


class WeightNorm:
    name = "smoke-norm"

    def score(self, model, data=None, *, progress=None, cancel=None):
        adapter = model.impl
        ids = [u.id for u in adapter.to_graph(model).prunable()]
        return {uid: float(sum(p.detach().float().norm() for p in adapter.unit_module(model, uid).parameters()))
                for uid in ids}


plugin = Plugin(name="smoke", version="0.1", criteria=[CriterionSpec("smoke-norm", "smoke_plugin:WeightNorm")])
PY
printf 'Metadata-Version: 2.1\nName: smoke-plugin\nVersion: 0.1\n' > "$PLUG/smoke_plugin-0.1.dist-info/METADATA"
printf '[slimgui.plugins]\nsmoke = smoke_plugin:plugin\n' > "$PLUG/smoke_plugin-0.1.dist-info/entry_points.txt"
run plugins-user plugins --json
json_has "$OUT/plugins-user.out" '"name": "smoke", "source": "smoke-plugin 0.1", "status": "ok"'
run analyze-user analyze demo:llm --criterion smoke-norm --json
json_has "$OUT/analyze-user.out" '"criterion": "smoke-norm"'
rm -rf "$PLUG"
ok "a plugin in the user plugin folder ($PLUG) is found and its criterion runs"

# 7. bad input -----------------------------------------------------------------------------------------------------
set +e
"$SLIM" inspect "$WORK/no-such-model" > "$OUT/bad.out" 2> "$OUT/bad.err"
code=$?
set -e
[ "$code" -eq 2 ] && [ "$(wc -l < "$OUT/bad.err")" -eq 1 ] && grep -q '^slimgui: error: ' "$OUT/bad.err" \
    || fail "bad input should give one line and exit 2, got exit $code: $(head -c 300 "$OUT/bad.err")"
ok "bad input: one line, exit 2"

size_mb="$(du -sm "$B" | cut -f1)"
echo "smoke: PASSED — bundle $size_mb MB unpacked; start-up to a drawn window ${t_empty}s (first) / ${t_empty2}s (third), warm page cache"
echo "SMOKE_RESULT size_mb=$size_mb startup_drawn_s=$(IFS=,; echo "${t_drawn[*]}") startup_exit_s=$(IFS=,; echo "${t_exit[*]}")"
