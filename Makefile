# The course's commands. `make book` and `make test` are the two a newcomer needs (see README).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export ICL_COURSE_PROGRESS ?= 0
export PYTHONHASHSEED = 0

.PHONY: setup book student-book test test-fast notebooks student bench clean

## setup: create .venv, install the package with every extra (pinned by constraints.txt), convert the real LM once
setup: $(STAMP)
$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24"
	$(PY) -m pip install -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(PY) -m icl_course prepare-lm
	touch $(STAMP)

## book: build the HTML book into _build/html (renders the committed, executed notebooks)
book: setup
	rm -rf _build
	$(VENV)/bin/jupyter-book build book --all -W --keep-going --path-output .

## student-book: build the student edition of the book (stubs instead of solutions, no launch buttons) into
## _build/student/_build/html, from a generated source in _build/student-src
student-book: setup
	rm -rf _build/student _build/student-src
	$(PY) -m icl_course student-book _build/student-src
	$(VENV)/bin/jupyter-book build _build/student-src/book --all -W --keep-going --path-output _build/student

## test: everything CI checks — lint, unit/property/golden tests, exercises, strict nbval, both editions of the book
## built and checked in a browser (tests/browser), reproduce
test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest tests book -n 2 --dist loadfile --no-loadscope-reorder --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600

## test-fast: unit tests only (no notebooks, no book build, no reproduce run)
test-fast: setup
	$(PY) -m pytest tests -m "not slow"

## notebooks: re-execute every chapter notebook from a fresh kernel (1 thread), saving widget state
notebooks: setup
	$(PY) -m icl_course.notebooks book
	$(PY) -m icl_course reproduce-page

## student: write the student edition (solutions replaced by stubs) to ./student
student: setup
	$(PY) -m icl_course student student

## bench: speed of the training path against a plain PyTorch loop, and of the mesa layer's methods against a naive loop
bench: setup
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_mesa.py

clean:
	rm -rf _build .pytest_cache student
