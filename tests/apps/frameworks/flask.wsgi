# The Flask application served unchanged.
from flaskapp import app

handle_request = app
