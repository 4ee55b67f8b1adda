"""Root conftest: loads the notebook CPU-budget hooks for the nbval run over book/."""

pytest_plugins = ["tests.nbval_budget"]
