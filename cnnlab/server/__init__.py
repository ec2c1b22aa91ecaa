"""The HTTP server of `cnnlab serve`: app.py (FastAPI app, limits), maps.py (feature maps for the page), static/ (the page)."""
