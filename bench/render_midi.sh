#!/bin/sh
# Render real MIDI compositions to FLAC, for an evaluation catalog of real (synthesised) recordings.
#
#   bench/render_midi.sh [OUT_DIR]     (default: ./midi-music)
#
# Uses only Debian packages (installed with apt-get when missing, so it works from a local mirror):
#   openttd-openmsx     OpenMSX 0.4.2, the 31 MIDI compositions of OpenTTD's free music set (GPL-2)
#   fluid-soundfont-gm  FluidR3_GM.sf2, a General MIDI soundfont (MIT)
#   fluidsynth          the synthesiser (LGPL-2.1); ffmpeg encodes the FLAC files
# Each .mid file becomes OUT_DIR/<folder>/<name>.flac, 44.1 kHz stereo, tagged with its title; the
# folder (the label `mertsearch eval` uses) is "redfarn" for the files whose names say they are
# Redfarn's (also tagged as artist), else "openmsx". Files already rendered are kept.
set -eu

OUT=${1:-./midi-music}
MIDI_DIR=${MIDI_DIR:-/usr/share/games/openttd/baseset/openmsx}
SOUNDFONT=${SOUNDFONT:-/usr/share/sounds/sf2/FluidR3_GM.sf2}

missing=""
[ -d "$MIDI_DIR" ] || missing="$missing openttd-openmsx"
[ -f "$SOUNDFONT" ] || missing="$missing fluid-soundfont-gm"
command -v fluidsynth >/dev/null 2>&1 || missing="$missing fluidsynth"
command -v ffmpeg >/dev/null 2>&1 || missing="$missing ffmpeg"
if [ -n "$missing" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "render_midi: missing$missing (install them, or set MIDI_DIR and SOUNDFONT)" >&2
        exit 1
    fi
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

echo "render_midi: $MIDI_DIR/*.mid with $(basename "$SOUNDFONT") (fluidsynth $(fluidsynth --version 2>/dev/null | head -1 | awk '{print $NF}')) -> $OUT"
count=0
for midi in "$MIDI_DIR"/*.mid; do
    name=$(basename "$midi" .mid)
    case "$name" in
        *_redfarn) folder=redfarn artist=Redfarn ;;
        *) folder=openmsx artist="" ;;
    esac
    flac="$OUT/$folder/$name.flac"
    count=$((count + 1))
    [ -s "$flac" ] && continue
    mkdir -p "$OUT/$folder"
    wav=$(mktemp "${TMPDIR:-/tmp}/render-midi-XXXXXX.wav")
    fluidsynth -ni -q -F "$wav" -r 44100 "$SOUNDFONT" "$midi" >/dev/null
    ffmpeg -nostdin -loglevel error -y -i "$wav" -c:a flac -metadata title="$name" \
        -metadata album=OpenMSX ${artist:+-metadata artist="$artist"} "$flac.part.flac"
    mv "$flac.part.flac" "$flac"
    rm -f "$wav"
done
echo "render_midi: $count files in $OUT"
