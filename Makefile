# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# The environment is one pinned stack (constraints.txt) in .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3.10 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.esl-installed
DEMO   := runs/demo

.PHONY: install demo test docs bench results clean

install: $(STAMP)

# lava-nc 0.10.0 / lava-dl 0.6.0 declare Requires-Python < 3.11; they run on 3.11 with
# esl_deploy/_lava_compat.py, so pip is told to ignore that declaration.
$(STAMP): constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"
	$(BIN)/python -m pip install --prefer-binary --ignore-requires-python -c constraints.txt -e .
	touch $(STAMP)

# The main job on the embedded digits data: train ESL at 10 % density (CPU kernels pinned to AVX2: the digits
# table's ESL seed-0 row bit for bit on any x86-64 CPU with AVX2), export to NIR and netx, run the
# NIR graph in Lava (Loihi 2 models, float and fixed point) against snnTorch, cost it on hardware.
demo: $(STAMP)
	$(BIN)/esl train --model mlp --dataset digits --method esl --density 0.1 --epochs 40 --seed 0 --cpu-kernels avx2 --out $(DEMO) --force
	$(BIN)/esl export $(DEMO)/checkpoint.pt --to nir -o $(DEMO)/model.nir --force
	$(BIN)/esl export $(DEMO)/checkpoint.pt --to netx -o $(DEMO)/model.h5 --force
	$(BIN)/esl simulate $(DEMO)/model.nir --backend lava --dataset digits
	$(BIN)/esl simulate $(DEMO)/model.nir --backend lava-fixed --dataset digits
	$(BIN)/esl energy $(DEMO)/checkpoint.pt --hw all --dataset digits --plot $(DEMO)/energy.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The documentation site (mkdocs.yml, docs/) into site/ with warnings as errors: a broken link, a missing anchor or
# reference, a page outside the nav fails. `make test` builds it too (tests/test_docs.py).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_mask_overhead.py
	$(BIN)/python benchmarks/bench_mapping.py
	$(BIN)/python benchmarks/bench_lava.py

# Every table and plot of the README and the docs, from scratch: the run folders of runs/results are deleted, so the
# first benchmark that needs a run trains it and the later ones share it within this one `make results`
# (each script alone retrains with --retrain); each writes results/NAME.{md,json,png}, then the README's headline
# table is made from them and the <!-- results:NAME --> blocks of the README and the docs pages are rewritten
# from those files (`make test` checks that they still match).
results: $(STAMP)
	rm -rf runs/results
	$(BIN)/python benchmarks/digits_results.py --epochs 40 --seeds 0 1 2
	$(BIN)/python benchmarks/digits_results.py --epochs 300 --seeds 0 1 2
	$(BIN)/python benchmarks/digits_budget.py --budgets 40 100 300 --seeds 0 1 2
	$(BIN)/python benchmarks/core_aware.py --epochs 40 --seeds 0 1 2
	$(BIN)/python benchmarks/readout_results.py --epochs 40 --seeds 0 1 2
	$(BIN)/python benchmarks/energy_table.py --epochs 40
	$(BIN)/python benchmarks/truenorth_weights.py --epochs 40
	$(BIN)/python benchmarks/lava_agreement.py --epochs 40
	$(BIN)/python benchmarks/structure_results.py --epochs 40 --mnist-epochs 10
	$(BIN)/python benchmarks/mnist_lava.py --mnist-epochs 10
	rm -rf runs/sweep
	$(BIN)/python benchmarks/mnist_sweep.py --epochs 10 --out runs/sweep
	$(BIN)/python benchmarks/nir_interop.py --epochs 40
	$(BIN)/python benchmarks/own_snntorch_mnist.py --epochs 3 --limit-train 12800 --lava-limit 500
	$(BIN)/python benchmarks/nir_compat.py
	$(BIN)/python benchmarks/resnet19_deploy.py --train 3000 --test 1000 --epochs 3 --T 4 --limit 50
	$(BIN)/python benchmarks/bench_conv_mapping.py --wide
	$(BIN)/python benchmarks/deep_fixed.py --test 10000 --chunk 1000
	$(BIN)/python benchmarks/bench_distributed.py
	$(BIN)/python benchmarks/bench_mnist_speed.py
	$(BIN)/python benchmarks/bench_cpu_kernels.py
	$(BIN)/python benchmarks/headline.py
	$(BIN)/python benchmarks/readme_tables.py --write

clean:
	rm -rf $(VENV) runs build site *.egg-info
