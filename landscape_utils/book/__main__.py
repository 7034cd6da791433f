"""``python -m landscape_utils.book``: the book driver (:mod:`landscape_utils.book.driver`)."""
import sys

from .driver import main

sys.exit(main())
