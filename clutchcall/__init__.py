"""ClutchCall: the Python SDK for the ClutchCall voice platform."""
