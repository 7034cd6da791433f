"""The book machinery (may import every other layer). ``python -m landscape_utils.book``
runs the driver (``__main__``).

Modules
    driver       the papermill/jupytext driver that builds the HTML book
    chapters     the chapter files and their parameters cells
    plan         the cost plan of a params file (``--plan``)
    doctor       a self-check of the machine (``python -m landscape_utils.book.doctor``)
    widgets      live explorers in JupyterLab, static charts in the book
"""
