"""The HTTP server of `cnnlab serve`: the drawing page, the run report and their JSON API.

app.py (the routes), body.py (a request's image), errors.py (every error answer),
limits.py (body size, in-flight and time limits), maps.py (feature maps for the page),
report.py (the numbers of each panel of the /run report), report_api.py (GET /run and
/api/run/...), camview.py (Grad-CAM overlays for the report's images), openapi.py (what
/docs says), serve.py (socket and uvicorn), static/ (the pages).
"""
