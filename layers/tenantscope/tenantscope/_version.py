"""The version of tenantscope: the distribution's (read from here when it is built) and the layer's."""

__version__ = "0.1.0"
