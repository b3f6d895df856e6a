#!/usr/bin/env python3
"""A component that reports its load to its node's platform API every 300 ms:
utilization 0.25 for index 0, 0.75 for index 1, and so on."""

import json
import os
import time
import urllib.error
import urllib.request

API = os.environ["VDC_API"]
TOKEN = os.environ["VDC_TOKEN"]
UTILIZATION = 0.25 + 0.5 * int(os.environ["VDC_INDEX"])

while True:
    request = urllib.request.Request(
        API + "/v1/self/load",
        data=json.dumps({"utilization": UTILIZATION}).encode(),
        method="POST",
    )
    request.add_header("Authorization", "Bearer " + TOKEN)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(f"load {response.status}", flush=True)
    except urllib.error.HTTPError as e:
        print(f"load {e.code}", flush=True)
    except OSError as e:
        print(f"load error {e}", flush=True)
    time.sleep(0.3)
