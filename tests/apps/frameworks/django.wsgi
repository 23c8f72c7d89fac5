# The Django project served unchanged through Django's WSGI handler.
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
handle_request = get_wsgi_application()
