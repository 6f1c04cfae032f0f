# Set-up and the two everyday commands. Each target creates .venv on first use.
# On a GPU machine add the kernels afterwards: .venv/bin/pip install -e ".[gpu]"
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned here (not in pyproject) so that pip takes the CPU wheel, not a CUDA build
	$(PY) -m pip install -q "torch==2.13.0" -e ".[test]"
	touch $@

.PHONY: quickstart test lint paper
# one thread per training job, one job per core: on a shared 2-core machine two 1-thread jobs
# run several times faster than one 2-thread job; then the HTML report of every table and figure
quickstart: $(VENV)/installed  ## the main job on the embedded synthetic dataset (CPU, offline)
	$(VENV)/bin/snakemake --cores $(shell nproc) --set-threads train=1 --configfile config/quickstart.yaml
	$(VENV)/bin/snakemake --report reports/report.html --configfile config/quickstart.yaml

test: lint  ## the test suite (real-data tests skip without ../shared/data)
	$(PY) -m pytest -q

lint: $(VENV)/installed  ## workflow style and Snakemake's own lint (quickstart config)
	$(VENV)/bin/snakefmt --check Snakefile rules/
	$(VENV)/bin/snakemake --lint --configfile config/quickstart.yaml

paper: $(VENV)/installed  ## the paper run (downloads; GPU advised)
	$(VENV)/bin/snakemake --cores 8
