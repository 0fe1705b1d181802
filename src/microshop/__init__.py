"""microshop: a Python microservices shop that runs on a laptop and deploys to Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("microshop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
