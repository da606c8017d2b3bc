# make run  - the portal with its emulators, worker and demo users (http://localhost:8000)
# make test - the whole test suite, as CI runs it
SHELL := /bin/bash
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
VENDOR := static/vendor

.PHONY: run test install static system-deps lint check-deploy clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) static

# Bootstrap and htmx come from the npm registry at install time, never from a CDN at run time.
# The source maps too: the manifest storage of collectstatic rewrites the sourceMappingURL
# comments of the two Bootstrap files and fails when the .map they name is missing.
$(VENDOR)/.stamp: package.json package-lock.json Makefile
	npm ci --no-audit --no-fund --silent
	mkdir -p $(VENDOR)/bootstrap $(VENDOR)/htmx
	cp node_modules/bootstrap/dist/css/bootstrap.min.css{,.map} $(VENDOR)/bootstrap/
	cp node_modules/bootstrap/dist/js/bootstrap.bundle.min.js{,.map} $(VENDOR)/bootstrap/
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx/
	touch $@

static: $(VENDOR)/.stamp

# Headless Chromium for the browser tests, from Debian's packages (root only).
system-deps:
	@if [ ! -x /usr/bin/chromium ] || ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose >/dev/null; \
	  else echo "not root: install chromium and docker-compose with apt-get for the browser and compose tests"; fi; \
	fi

run: install
	$(VENV)/bin/python scripts/dev.py

test: install system-deps
	scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

check-deploy: $(STAMP)
	DJANGO_SECRET_KEY=$$(head -c 48 /dev/urandom | base64) DJANGO_ALLOWED_HOSTS=portal.example.com \
	ENTRA_TENANT_ID=00000000-0000-0000-0000-000000000001 ENTRA_CLIENT_ID=00000000-0000-0000-0000-000000000002 \
	ENTRA_CLIENT_SECRET=x TOKEN_CACHE_KEYS=$$(head -c 32 /dev/urandom | base64 | tr '+/' '-_') \
	AUDIT_HMAC_KEYS=k1:$$(head -c 32 /dev/urandom | base64) \
	$(VENV)/bin/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) node_modules $(VENDOR) var
