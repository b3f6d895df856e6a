#!/usr/bin/env python3
"""A component that calls the platform with the token it was given: it
reports its load, asks for ASK_REPLICAS replicas of its own component, and
tries what its token must not allow. Each outcome is one line of output."""

import json
import os
import time
import urllib.error
import urllib.request

API = os.environ["VDC_API"]
TOKEN = os.environ["VDC_TOKEN"]


def call(method, path, body=None, token=TOKEN):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(API + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


if os.environ.get("VDC_INDEX") == "0":
    status, body = call("GET", "/v1/self")
    print(f"self {status} {body}", flush=True)
    status, _ = call("POST", "/v1/self/load", {"utilization": 0.5})
    print(f"load {status}", flush=True)
    status, _ = call("POST", "/v1/self/load", {"utilization": -1})
    print(f"bad-load {status}", flush=True)
    status, _ = call("GET", "/v1/apps")
    print(f"apps {status}", flush=True)
    status, _ = call("GET", "/v1/tenants")
    print(f"tenants {status}", flush=True)
    forged = TOKEN[:-4] + ("0000" if not TOKEN.endswith("0000") else "1111")
    status, _ = call("GET", "/v1/self", token=forged)
    print(f"forged {status}", flush=True)
    status, body = call("POST", "/v1/self/replicas", {"replicas": 99})
    print(f"too-many {status} {body}", flush=True)
    status, body = call("POST", "/v1/self/replicas", {"replicas": int(os.environ["ASK_REPLICAS"])})
    print(f"replicas {status}", flush=True)
time.sleep(3600)
