# The contract for people and CI alike: every target that needs the venv depends on `install`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install test test-all lint type format bench reproduce reproduce-quick docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/pytest -q

test-all: install
	$(BIN)/pytest -q -m ''

lint: install
	$(BIN)/ruff check safeknob tests
	$(BIN)/ruff format --check safeknob tests
	$(BIN)/pytest -q -p no:cacheprovider tests/test_layers.py

format: install
	$(BIN)/ruff format safeknob tests
	$(BIN)/ruff check --fix safeknob tests

type: install
	$(BIN)/mypy safeknob

bench: install
	$(BIN)/python -m safeknob.bench

reproduce: install
	$(BIN)/safeknob reproduce

reproduce-quick: install
	$(BIN)/safeknob reproduce --quick

clean:
	rm -rf $(VENV)

docs: install
	$(BIN)/python -m safeknob.docs data

# Ray for `safeknob sweep --backend ray` (checked: 2.60.0 cp311 wheel beside our pins).
.PHONY: install-ray
install-ray: install
	$(BIN)/pip install --quiet 'ray[default]==2.60.0'

# Weights & Biases for `safeknob --wandb` (the extra safeknob[wandb]).
.PHONY: install-wandb
install-wandb: install
	$(BIN)/pip install --quiet -e '.[wandb]'

.PHONY: install-minari
install-minari: install
	$(BIN)/pip install --quiet 'minari==0.5.4'

# Bullet-Safety-Gym pins gymnasium~=0.28.1 on paper but runs on 0.29.1 (checked: the
# ball-circle experiment and tests/test_bullet.py), so it is installed without its deps.
.PHONY: install-bullet
install-bullet: install
	$(BIN)/pip install --quiet pybullet==3.2.7
	$(BIN)/pip install --quiet --no-deps bullet-safety-gym==1.4.0

# Safety-Gymnasium 1.0.0 (the last release) pins gymnasium==0.28.1 and pygame==2.1.0 (no cp311
# wheel), so it is installed without its deps, beside what its single-agent tasks import
# (mujoco==2.3.3 has a cp311 wheel and runs with our numpy). gymnasium-robotics, which it
# imports only for its multi-agent tasks, is left out on purpose (it pins numpy<1.24 and, as a
# gymnasium plugin, would be imported by every `import gymnasium`). Its import on Python 3.11
# goes through safeknob.envs.safety_gymnasium (docstring: the two compatibility measures);
# checked by tests/test_safety_gymnasium.py.
.PHONY: install-safety-gymnasium
install-safety-gymnasium: install
	$(BIN)/pip install --quiet 'mujoco==2.3.3' 'imageio>=2.27' 'xmltodict>=0.13' 'pyyaml>=6.0'
	$(BIN)/pip install --quiet --no-deps 'safety-gymnasium==1.0.0'
