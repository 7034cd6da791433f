"""landscape_utils: the numerics behind landscape-book.

Modules, one concern each, in five layers, one folder a layer: a module imports only from
its own folder or the folders above it in this list (``tests/test_imports.py`` checks every
import, those inside functions included). Each folder's ``__init__`` indexes its modules.
The Methods appendix, ``book/07_methods.py``, defines every metric and procedure.

Layers
    core         the foundation: data, models, training, weights, axes, settings, plotting
    runs         the run store, the executors, store-cached tasks and the chapters' tables
    metrics      the metrics of one model, one pair or one set of models
    experiments  the experiments of chapters 2 to 6: grids of measurements, phases, findings
    book         the book machinery: driver, chapters, cost plan, self-check, explorers

``reference_data/`` holds the authors' released metrics and the Model Zoo's tables, read by
``experiments.reference`` and ``experiments.zoo`` and written by
``python -m landscape_utils.experiments.derive``.
"""

__version__ = "0.1.0"
