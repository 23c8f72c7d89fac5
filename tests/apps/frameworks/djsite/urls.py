from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("hello/<str:name>", views.hello, name="hello"),
    path("query", views.query),
    path("csrf", views.csrf),
    path("form", views.form),
    path("json", views.json_echo),
    path("upload", views.upload),
    path("setcookie", views.setcookie),
    path("getcookie", views.getcookie),
    path("redirect", views.go),
    path("target", views.target, name="target"),
    path("urls", views.urls),
    path("boom", views.boom),
]
