# One entry point. `make test` and `make demo` do all their own set-up on a fresh
# Debian machine: toxcore (native/toxcore-build.sh), a virtual environment, the package.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml native/toxcore-build.sh
	bash native/toxcore-build.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,wan]' \
		|| echo "make: netfilterqueue did not build (libnetfilter-queue-dev?); the WAN tests and bench wan will skip" >&2
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -m 'not wip'

test-fast: setup
	$(PY) -m pytest -q -m 'not tox and not wip'

demo: setup
	$(PY) -m toxbridge demo

bench: setup
	$(PY) -m bench raw_tox

clean:
	rm -rf $(VENV) build *.egg-info
