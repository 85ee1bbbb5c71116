"""DMP ingestion pipeline: intake, workers, index, object storage and crypto."""

__version__ = "0.1.0"
