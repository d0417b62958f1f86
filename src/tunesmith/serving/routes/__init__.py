"""The API's routers, one per family of endpoints; app.py mounts them all."""
