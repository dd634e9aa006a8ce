"""bratsflow: an end-to-end BraTS-style brain-tumour MRI toolkit."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bratsflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
