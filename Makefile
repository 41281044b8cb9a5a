# `make run`  : set up .venv, then the demo: ATM on the embedded model over 6 bundled Natural Questions rows ->
#               filter -> SFT, attacker DPO and corrections datasets -> HTML report (README: "The two commands").
# `make test` : set up .venv and run every test (slow ones included), as CI does.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_RUN ?= runs/atm-demo
DEMO_OUT ?= out/atm-demo
COEVOL_RUN ?= runs/coevol-demo
COEVOL_OUT ?= out/coevol-demo
PPO_VENV ?= .venv-ppo
STUDIO_VENV ?= .venv-studio

.PHONY: venv venv-ppo venv-studio sysdeps run demo run-coevol test lint bench clean pictures

# Debian packages the tests use: Chromium renders `synth report` pages headless, graphviz draws graph
# pictures (`synth graphs show --png`). Installed only when missing; needs root (CI runs as root).
sysdeps:
	@command -v chromium >/dev/null && command -v dot >/dev/null || { \
	  apt-get update -q >/dev/null && apt-get install -y -q chromium graphviz >/dev/null; }

# Creates the venv when missing and refreshes it every time. torch goes first and exactly: any range
# would let pip pull a multi-GB CUDA build. xgrammar goes with --no-deps: its triton dependency is
# ~1 GB and unused on CPU (GPU users: `pip install triton`, see README).
venv:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps xgrammar==0.2.8 apache-tvm-ffi
	$(PIP) install -q -e '.[train,dev,dense,ray,serve]'

run: venv
	@$(MAKE) --no-print-directory demo

# The main job without the venv step (`make demo BIN=/path/to/venv/bin` reuses another environment).
# ATM: the attacker writes 2 fabrications per question, the generator's log-likelihood of the gold answer
# ranks them (attacker DPO pairs), and exact match against the gold answer judges the generator's answer on
# the attacked context (a wrong one becomes a correction). Re-running resumes: done rows are skipped.
demo:
	$(BIN)/synth run atm --input examples/atm_demo_seeds.jsonl --out $(DEMO_RUN) --model local:gemma-3-270m \
	  -O n_fabrications=2 --concurrency 6 --force
	$(BIN)/synth filter $(DEMO_RUN) --filter "required fields=result.chosen,result.rejected,result.attacked_answer" \
	  --filter "language field=result.attacked_answer languages=en"
	$(BIN)/synth export $(DEMO_RUN) --format sft --out $(DEMO_OUT)/sft --overwrite --seed-license CC-BY-SA-3.0
	$(BIN)/synth export $(DEMO_RUN) --format atm-dpo --out $(DEMO_OUT)/atm-dpo --overwrite --seed-license CC-BY-SA-3.0
	$(BIN)/synth export $(DEMO_RUN) --format corrections --out $(DEMO_OUT)/corrections --overwrite --seed-license CC-BY-SA-3.0
	$(BIN)/synth report $(DEMO_RUN)
	$(BIN)/synth status $(DEMO_RUN)
	@echo "== make run wrote:"
	@echo "  $(DEMO_RUN)/               run folder: one ATM trajectory per question (records.sqlite, log.jsonl)"
	@echo "  $(DEMO_RUN)/report/index.html  HTML report: statuses, filter reasons, EM clean vs attacked, tokens"
	@echo "  $(DEMO_OUT)/sft/           SFT: generator prompt (closed-book or with its documents) -> gold answer"
	@echo "  $(DEMO_OUT)/atm-dpo/       DPO: attacker prompt, chosen = most misleading fabrication (highest"
	@echo "                             generator NLL of the gold answer), rejected = least misleading"
	@echo "  $(DEMO_OUT)/corrections/   attacked prompt + the generator's wrong answer + 'correct it' -> gold"
	@echo "  Each dataset folder has a README.md card; counts are printed above."

# The previous demo: CoEvol (debate, advise, edit, judge) on 3 Alpaca-style rows. The 270M base model's
# judge rarely prefers a revision, so its DPO export is usually empty (and says why).
run-coevol: venv
	$(BIN)/synth run coevol --input examples/coevol_seeds.jsonl --out $(COEVOL_RUN) --model local:gemma-3-270m --concurrency 3 --force
	$(BIN)/synth export $(COEVOL_RUN) --format sft --out $(COEVOL_OUT)/sft --overwrite
	$(BIN)/synth export $(COEVOL_RUN) --format dpo --out $(COEVOL_OUT)/dpo --overwrite
	$(BIN)/synth status $(COEVOL_RUN)

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: venv venv-ppo venv-studio sysdeps
	$(BIN)/ruff check synth roles graphs train tests bench
	$(BIN)/ruff format --check synth roles graphs train tests bench
	$(BIN)/mypy
	@$(BIN)/python -m pytest -q -rs; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc
	@echo "== PPO tests (tests/train/ppo) in $(PPO_VENV): trl==1.12.0"
	@$(PPO_VENV)/bin/python -m pytest tests/train/ppo -q -rs; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no PPO tests"; exit 1; fi; exit $$rc
	@echo "== LangGraph CLI tests (tests/studio) in $(STUDIO_VENV): langgraph dev"
	@$(STUDIO_VENV)/bin/python -m pytest tests/studio -q -rs; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no LangGraph CLI tests"; exit 1; fi; exit $$rc

# PPO needs TRL 1.12 (TRL removed PPOTrainer in 1.13): a second venv with the project and its `ppo`
# extra (trl==1.12.0 resolves beside the base dependencies). torch first and exactly, as in `venv`.
venv-ppo:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PPO_VENV)/bin/python || $(PYTHON) -m venv $(PPO_VENV)
	$(PPO_VENV)/bin/python -m pip install -q --upgrade pip
	$(PPO_VENV)/bin/python -m pip install -q torch==2.13.0
	$(PPO_VENV)/bin/python -m pip install -q -e '.[ppo,dev]'

# `langgraph dev` (LangGraph Studio) needs langgraph-cli[inmem], which upgrades protobuf to 6.x against
# autogen-core's protobuf~=5.29.3 pin (pip warns; the graphs never use protobuf): a third venv, so the
# main one keeps its pins. The CLI goes last, after the project, exactly as a user installs it.
venv-studio:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(STUDIO_VENV)
	$(STUDIO_VENV)/bin/python -m pip install -q --upgrade pip
	$(STUDIO_VENV)/bin/python -m pip install -q torch==2.13.0
	$(STUDIO_VENV)/bin/python -m pip install -q --no-deps xgrammar==0.2.8 apache-tvm-ffi
	$(STUDIO_VENV)/bin/python -m pip install -q -e . 'pytest>=8' 'pytest-asyncio>=0.24'
	$(STUDIO_VENV)/bin/python -m pip install -q 'langgraph-cli[inmem]==0.4.40'

# Pictures of the built-in graphs and the YAML example for README (graphviz `dot`, offline).
pictures:
	@mkdir -p docs/img
	for g in atm coevol smart examples/reflexion.yaml; do \
	  $(BIN)/synth graphs show $$g --png docs/img/$$(basename $$g .yaml).png >/dev/null; done

lint:
	$(BIN)/ruff check synth roles graphs train tests bench
	$(BIN)/ruff format --check synth roles graphs train tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(PPO_VENV) $(STUDIO_VENV) .langgraph_api runs out build *.egg-info
