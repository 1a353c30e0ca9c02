# make install: a .venv with everything (and FFmpeg's shared libraries where apt can bring them).
# make test:    install, then lint and run the whole test suite in fp32 and again in bf16 (PostgreSQL's
#               tests on a local server, MPD's on one it starts); make test-fast: the tests not marked slow.
# make index MUSIC=~/Music CATALOG=./catalog [MODEL=mert-v1-95m LAYER=N]: install, then index
#               (LAYER defaults to the model's own: 7 for MERT-v1-95M).
# make serve CATALOG=./catalog: the HTTP API and web page on http://127.0.0.1:8000/
# make demo:    install, index a free soundtrack (Debian's warzone2100-music) and report search quality.
# make demo-midi: the same on real MIDI compositions (Debian's openttd-openmsx) rendered with FluidSynth.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MUSIC ?= $(HOME)/Music
CATALOG ?= ./catalog
MODEL ?= mert-v1-95m
LAYER ?=

.PHONY: install ffmpeg chromium mpd postgres test test-fast lint index serve demo demo-midi clean

install: ffmpeg $(STAMP)

# $(call system_package,CHECK,PACKAGE,NAME,ADVICE): run CHECK; if it fails, apt-get install PACKAGE
# where apt exists, else print ADVICE and stop.
define system_package
	@if $(1) >/dev/null 2>&1; then \
		echo "$(3): found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $(2); \
	else \
		echo "$(4)" >&2; \
		exit 1; \
	fi
endef

# torchcodec decodes through FFmpeg's shared libraries (libavcodec and friends).
ffmpeg:
	$(call system_package,sh -c "ldconfig -p | grep -q 'libavcodec\.so'",ffmpeg,FFmpeg libraries,FFmpeg's shared libraries are missing: install FFmpeg 4-7 (brew install ffmpeg or dnf install ffmpeg-free) and rerun make install)

# The web page's tests drive Debian's Chromium (Playwright uses it; it downloads no browser).
chromium:
	$(call system_package,command -v chromium,chromium,Chromium,the browser tests need Chromium at /usr/bin/chromium: install your system's chromium package)

# The MPD radio's tests start Debian's mpd (the music player daemon) on loopback.
mpd:
	$(call system_package,command -v mpd,mpd,MPD,the MPD radio's tests need the mpd binary: install your system's mpd package)

# The PostgreSQL tests need a real server: Debian's postgresql package, its clusters started (the
# service runs them as the postgres user), and a role that may create the tests' databases.
TEST_POSTGRES_ROLE ?= mertsearch_test
TEST_POSTGRES ?= postgresql+psycopg://$(TEST_POSTGRES_ROLE):$(TEST_POSTGRES_ROLE)@localhost/postgres
AS_POSTGRES = $$( [ "$$(id -u)" = 0 ] && echo runuser -u postgres -- || echo sudo -u postgres )

postgres:
	$(call system_package,command -v pg_ctlcluster,postgresql,PostgreSQL,the PostgreSQL tests need a local server: install PostgreSQL or run pytest without MERTSEARCH_TEST_POSTGRES)
	@[ -n "$$(pg_lsclusters -h)" ] || pg_createcluster "$$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main
	@pg_lsclusters -h | while read -r version name _rest; do \
		pg_ctlcluster "$$version" "$$name" status >/dev/null 2>&1 || pg_ctlcluster "$$version" "$$name" start; \
	done
	@for _ in $$(seq 30); do pg_isready -q -h localhost && break; sleep 1; done; pg_isready -h localhost
	@$(AS_POSTGRES) psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname = '$(TEST_POSTGRES_ROLE)'" | grep -q 1 || \
		$(AS_POSTGRES) psql -qc "CREATE ROLE $(TEST_POSTGRES_ROLE) LOGIN CREATEDB PASSWORD '$(TEST_POSTGRES_ROLE)'"
	@echo "PostgreSQL: ready for the tests as $(TEST_POSTGRES_ROLE)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	# milvus-lite without its faiss-cpu, which would overwrite faiss-gpu's faiss package.
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps milvus-lite
	touch $(STAMP)

lint: install
	$(BIN)/ruff check mertsearch beetsplug tests bench
	$(BIN)/ruff format --check mertsearch beetsplug tests bench

# The suite twice: in fp32 (what "auto" picks on a CPU without bf16 units), then with bf16 forced
# (what it picks on one with them), so both roads are proven whatever CPU runs it. The first pass
# also runs the Milvus tests on a real Milvus server, which the tests start and stop (precision
# does not change what Milvus does, and it takes minutes).
test: install chromium mpd postgres lint
	MERTSEARCH_TEST_POSTGRES='$(TEST_POSTGRES)' MERTSEARCH_TEST_PRECISION=fp32 MERTSEARCH_TEST_MILVUS_SERVER=1 \
		$(BIN)/python -m pytest
	MERTSEARCH_TEST_POSTGRES='$(TEST_POSTGRES)' MERTSEARCH_TEST_PRECISION=bf16 $(BIN)/python -m pytest

# The fast inner loop: everything not marked slow (under 2 minutes on 2 cores).
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

index: install
	$(BIN)/mertsearch index "$(MUSIC)" --catalog "$(CATALOG)" --model "$(MODEL)" $(if $(LAYER),--layer $(LAYER))

serve: install
	$(BIN)/mertsearch serve --catalog "$(CATALOG)"

DEMO_MUSIC ?= /usr/share/games/warzone2100/music
DEMO_CATALOG ?= ./demo-catalog

# $(call demo_index,MUSIC,CATALOG): index MUSIC into CATALOG with MODEL, every layer kept (so eval sweeps
# them), when its weights can be had; else with the spectral baseline, said plainly.
define demo_index
	@if [ -f "$(2)/manifest.json" ]; then model=""; \
	elif $(BIN)/mertsearch models download $(MODEL) >/dev/null 2>&1; then model="--model $(MODEL) --keep-layers all"; \
	else echo "demo: the $(MODEL) weights cannot be downloaded here (no network?); using the weight-free spectral baseline instead"; \
		model="--model spectral"; fi; \
	$(BIN)/mertsearch index "$(1)" --catalog "$(2)" $$model
endef

# Real recordings from Debian's packages, then an evaluation report and a search.
demo: install
	$(call system_package,test -d "$(DEMO_MUSIC)",warzone2100-music,demo music,put some music in DEMO_MUSIC=FOLDER)
	$(call demo_index,$(DEMO_MUSIC),$(DEMO_CATALOG))
	$(BIN)/mertsearch eval --catalog "$(DEMO_CATALOG)" --excerpts 20
	$(BIN)/mertsearch similar 1 --catalog "$(DEMO_CATALOG)" -k 3

MIDI_MUSIC ?= ./midi-music
MIDI_CATALOG ?= ./midi-catalog

# Real compositions: OpenMSX's 31 MIDI files (Debian's openttd-openmsx, GPL-2) rendered to FLAC by
# FluidSynth with the FluidR3 General MIDI soundfont (fluid-soundfont-gm); see bench/render_midi.sh.
demo-midi: install
	sh bench/render_midi.sh "$(MIDI_MUSIC)"
	$(call demo_index,$(MIDI_MUSIC),$(MIDI_CATALOG))
	$(BIN)/mertsearch eval --catalog "$(MIDI_CATALOG)" --excerpts 31

clean:
	rm -rf $(VENV) .pytest_cache
