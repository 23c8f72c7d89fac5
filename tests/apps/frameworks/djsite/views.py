import hashlib
import json

from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return HttpResponse("django index")


def hello(request, name):
    return HttpResponse("hello %s" % name)


def query(request):
    return JsonResponse({k: request.GET.getlist(k) for k in request.GET})


def csrf(request):
    return JsonResponse({"token": get_token(request)})


def form(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    return JsonResponse({k: request.POST.getlist(k) for k in request.POST})


@csrf_exempt
def json_echo(request):
    data = json.loads(request.body)
    return JsonResponse({"received": data, "type": type(data).__name__}, status=201)


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    h = hashlib.sha256()
    size = 0
    for chunk in f.chunks():
        h.update(chunk)
        size += len(chunk)
    return JsonResponse({"filename": f.name, "sha256": h.hexdigest(), "size": size,
                         "note": request.POST.get("note"),
                         "handler": type(f).__name__})


def setcookie(request):
    resp = HttpResponse("cookies set")
    resp.set_cookie("django_a", "1")
    resp.set_cookie("django_b", "two", httponly=True)
    return resp


def getcookie(request):
    return JsonResponse(request.COOKIES)


def go(request):
    return redirect("target")


def target(request):
    return HttpResponse("target reached")


def urls(request):
    return JsonResponse({"target": reverse("target"), "path": request.path,
                         "path_info": request.path_info,
                         "absolute": request.build_absolute_uri(reverse("target"))})


def boom(request):
    raise RuntimeError("django boom")
