# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast bench browser pango clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/signoff demo

# Chromium for the browser tests: installed from Debian's packages when missing and we are root
# (as on CI); elsewhere the browser tests are skipped with the reason shown.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium for the browser tests"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# Pango for WeasyPrint (the evidence PDF), the same way: installed when WeasyPrint cannot load it
# and we are root; elsewhere the PDF tests are skipped with the reason shown.
pango: $(STAMP)
	@if ! $(BIN)/python -c "import weasyprint" >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing pango for the evidence PDF"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 >/dev/null; \
	fi

test: $(STAMP) browser pango
	$(BIN)/python -m pytest

# The quick loop while working: everything but the browser, PostgreSQL and slow tests (those that
# start signoff as a process or take over ~2 s). `make test` still runs them all.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not browser and not postgres and not slow"

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) demo build dist *.egg-info
