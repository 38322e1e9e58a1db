"""vlsa: domain-generalised medical image segmentation with vision-language semantic aggregation."""

__version__ = "0.1.0"
