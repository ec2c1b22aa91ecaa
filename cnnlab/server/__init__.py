"""The HTTP server of `cnnlab serve`: the drawing page and its JSON API over one run.

app.py (the routes), body.py (a request's image), errors.py (every error answer),
limits.py (body size, in-flight and time limits), maps.py (feature maps for the page),
openapi.py (what /docs says), serve.py (socket and uvicorn), static/ (the page).
"""
