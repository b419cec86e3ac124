# kbind: `make run` (install + default recipe) and `make test` (install + tests).
# Install steps are stamped, so they are fast when nothing changed.

PY ?= python3
PIP := $(PY) -m pip
TORCH := torch==2.13.0
NATIVE_SRC := $(wildcard cbridge/*.c cbridge/*.h) cbridge/build_native.py setup.py pyproject.toml

.PHONY: install run test bench clean

# Debian packages: the offline TTS engines and sox that egs/digits synthesises its corpus with,
# and what the Kaldi build in ../shared/kaldi needs to run and to be linked against (OpenFst,
# OpenBLAS, gfortran), for the tests and benchmarks that compare kbind with Kaldi.
TTS_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox
KALDI_PACKAGES := libfst-dev libopenblas-dev libgfortran-12-dev
APT_PACKAGES := $(TTS_PACKAGES) $(KALDI_PACKAGES)

install: .stamp-apt .stamp-build

.stamp-apt: Makefile
	@if command -v espeak-ng >/dev/null && command -v flite >/dev/null && \
	    command -v text2wave >/dev/null && command -v sox >/dev/null && \
	    [ -d /usr/share/festival/voices/english/kal_diphone ] && \
	    [ -d /usr/share/festival/voices/english/ked_diphone ] && \
	    [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] && \
	    dpkg -s $(KALDI_PACKAGES) >/dev/null 2>&1; then \
	  echo "system packages present: $(APT_PACKAGES)"; \
	else \
	  (apt-get update -qq || true) && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	touch $@

.stamp-deps: requirements.txt
	$(PIP) install -q --disable-pip-version-check $(TORCH)
	$(PIP) install -q --disable-pip-version-check -r requirements.txt
	touch $@

.stamp-build: .stamp-deps $(NATIVE_SRC)
	$(PIP) install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	$(PY) -c "import kbind._native as n; n._require(); print('kbind native core built, OpenMP threads:', n.max_threads())"
	touch $@

run: install
	$(PY) egs/digits/run.py

# The end-to-end tests marked slow (tiny digits corpus through LF-MMI training and
# decoding, about a minute) are cheap enough for CI, so make test runs them too.
test: install
	$(PY) -m pytest -q -rs -m ""

bench: install
	$(PY) scripts/bench/run_all.py

clean:
	rm -rf build *.egg-info .stamp-* kbind/_kbind_native*.so kbind/_kbind_native.c \
	  .pytest_cache bench-out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
