# The Django project under wsgiref.validate.validator, warnings as errors.
import os
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

handle_request = validator(get_wsgi_application())
