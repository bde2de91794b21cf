# The two commands a newcomer runs on a fresh clone; each sets itself up first.
#   make demo   the main job on the default data ($CXR_DATA, else ../shared/data):
#               inspect, train configs/demo.yaml (pretrained EfficientNet-Lite0), evaluate on the
#               internal-test patients that tuned nothing, report.html
#   make test   the test suite
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint

# pip -qq: a host's pip configuration can warn once per package about absent local indexes;
# install errors still print.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --quiet --disable-pip-version-check -e '.[dev,xrv,pacs]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cxr data inspect
	$(VENV)/bin/cxr study --config configs/demo.yaml

# cxr doctor first: every test log starts by saying which host class it ran on. Test files run
# in parallel, one process per core up to 4 (pytest-xdist); a file's tests stay in one process,
# in order, since documented commands build on the ones before them.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
test: $(STAMP)
	$(VENV)/bin/cxr doctor
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile
