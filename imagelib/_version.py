"""imagelib's version (its own module so core modules need not import the package facade)."""

__version__ = "0.1.0"
