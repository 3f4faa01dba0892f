# Digit Lab. `make run` starts the app, `make test` runs every test; both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
PG_BIN := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
NGINX := /usr/sbin/nginx
PORT ?= 8501
REPLICAS ?= 2
HALL_PORT ?= 8500
# Two pytest workers, a test file each: most tests wait on servers, browsers and the
# engine, so two at once use the two cores (25 -> 17 min here). PARALLEL= runs serially.
# Files go out longest first (tests/conftest.py), not xdist's most-tests-first.
PARALLEL ?= -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: setup data chromium fonts postgres nginx run class hall test test-fast lint format bench bench-quick clean

setup: $(INSTALLED) data

# Reinstall only when requirements.txt changes.
$(INSTALLED): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Fetches, verifies (SHA-256) and caches MNIST; a no-op when the cache is good.
data: $(INSTALLED)
	@$(PY) -m mnist_demo fetch-data

# The browser tests drive Debian's Chromium (Playwright's own download can't reach
# its hosts from every network).
chromium:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests need Chromium at $(CHROMIUM): run 'sudo apt-get install -y chromium'"; \
		exit 1; \
	fi

# The generated non-digits (tools/non_digits.py: tests, the novelty fit, benchmarks) are
# letters and symbols drawn with these fonts; without them Pillow's tiny built-in font
# would make other sets than the ones the shipped rules were fitted against.
fonts:
	@if [ -d /usr/share/fonts/truetype/dejavu ] && [ -d /usr/share/fonts/truetype/liberation ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing the DejaVu and Liberation fonts for the generated non-digits"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core fonts-liberation >/dev/null; \
	else \
		echo "The non-digit tests need fonts: run 'sudo apt-get install -y fonts-dejavu-core fonts-liberation'"; \
		exit 1; \
	fi

# The store's tests run on SQLite and on a PostgreSQL they start themselves (initdb and
# pg_ctl in a temporary folder, mnist_demo/serve/postgres.py); `make hall` starts one too. Only
# Debian's binaries are needed: the cluster the package would create and start on 5432
# at install is turned off first (createcluster.d), and stopped should one exist anyway.
postgres:
	@if [ -n "$(PG_BIN)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's postgresql for the store's tests and the lecture hall"; \
		mkdir -p /etc/postgresql-common/createcluster.d && \
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/digit-lab.conf && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null && \
		pg_lsclusters -h 2>/dev/null | while read -r version cluster port status rest; do \
			if [ "$$status" = online ]; then pg_ctlcluster "$$version" "$$cluster" stop; fi; \
		done; \
	else \
		echo "The store's tests need PostgreSQL: run 'sudo apt-get install -y postgresql'"; \
		exit 1; \
	fi

# The lecture hall (`make hall`) puts Debian's nginx in front of its app servers; the
# package's own server on port 80, started at install under systemd, is stopped.
nginx:
	@if [ -x $(NGINX) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's nginx for the lecture hall"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null && \
		if [ -d /run/systemd/system ]; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi; \
	else \
		echo "The lecture hall needs nginx: run 'sudo apt-get install -y nginx'"; \
		exit 1; \
	fi

# run, class and hall are one supervisor (mnist_demo/serve/hall.py) of three sizes: it
# starts the pieces in order, starts again any that dies, and Ctrl+C stops them all.
# On this machine only, solo: every browser has the instructor's controls.
run: setup
	@$(PY) -m mnist_demo serve --port $(PORT)

# For a room: serves the local network; students by default, the instructor's link is
# printed at start (set MNIST_DEMO_INSTRUCTOR_CODE to choose the code).
class: setup
	@$(PY) -m mnist_demo serve --class --port $(PORT)

# A lecture hall on this machine: PostgreSQL, the Ray engine, $(REPLICAS) app servers and
# nginx in front (sticky sessions) on $(HALL_PORT).
hall: setup postgres nginx
	@$(PY) -m mnist_demo hall --replicas $(REPLICAS) --port $(HALL_PORT)

test: setup chromium fonts postgres nginx
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest $(PARALLEL) -m "not heavy"

# Everything but the browser tests and the quick benchmarks, for a loop while editing.
test-fast: setup fonts postgres
	$(PY) -m pytest $(PARALLEL) -m "not e2e and not bench"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Every benchmark's quick run, the heavy ones too (make test leaves those out): 8 min.
bench-quick: setup chromium fonts postgres nginx
	$(PY) -m pytest -m bench

bench: setup fonts
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
