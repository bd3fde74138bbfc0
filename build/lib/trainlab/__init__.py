"""trainlab: the seed notes' linear-regression pipeline as a tracked, configurable tool."""

__version__ = "0.1.0"
