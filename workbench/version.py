"""The package version, in a leaf module so that anything can read it without loading the Sampler stack."""

__version__ = "0.1.0"
