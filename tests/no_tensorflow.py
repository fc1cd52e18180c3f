"""An IPython start-up file that makes TensorFlow unimportable: a JAX-only install (`pip install
-e ".[jax]"`) on a machine that has TensorFlow. `make test` runs every notebook's JAX pass with it,
and `tests/test_notebooks.py` checks a kernel's record; Keras itself would otherwise import an
installed TensorFlow on the JAX backend (to seed it, to save a model)."""

import sys


class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: a JAX-only install)")


sys.meta_path.insert(0, NoTensorFlow())
