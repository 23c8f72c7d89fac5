# A minimal Django project: no database, no templates, CSRF protection on.
SECRET_KEY = "test-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "djsite.urls"
INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES = {}
USE_TZ = True
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # larger uploads go to a temporary file
