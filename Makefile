# mailstack: "make run" starts the demo, "make test" runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := var/demo
DEMO_DOMAIN := example.test
DEMO_USER := demo@$(DEMO_DOMAIN)
DEMO_PASSWORD := demo
export PYTHONPATH := $(CURDIR)

.PHONY: run test install docs clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(DEMO)/main.cf: | $(VENV)/.installed
	$(VENV)/bin/mailstack --config $(DEMO) init --ports dev --domain $(DEMO_DOMAIN) --hostname localhost --postmaster $(DEMO_USER)

run: $(VENV)/.installed $(DEMO)/main.cf
	@$(VENV)/bin/mailstack --config $(DEMO) user show $(DEMO_USER) >/dev/null 2>&1 || \
	  $(VENV)/bin/mailstack --config $(DEMO) user add $(DEMO_USER) --password $(DEMO_PASSWORD)
	@echo "mailstack demo: user $(DEMO_USER), password $(DEMO_PASSWORD); SMTP 2525, submission 5870, SMTPS 4650, POP3 1100, POP3S 9950, IMAP 1430, IMAPS 9930"
	$(VENV)/bin/twistd -n --pidfile= mailstack --config $(DEMO)

test: $(VENV)/.installed
	$(PY) -m pytest

docs: $(VENV)/.installed
	$(VENV)/bin/mailstack postconf --docs > docs/parameters.md

clean:
	rm -rf $(VENV) var
