# The Flask application under wsgiref.validate.validator, warnings as errors.
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

from flaskapp import app  # noqa: E402

handle_request = validator(app)
