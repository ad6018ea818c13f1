"""helm test: upload a real MNIST digit through the gateway and check the answer.

Standard library only, so it runs in the gateway image as it is.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

URL = os.environ["GATEWAY_URL"] + "/api/v1/predictions"
EXPECTED = int(os.environ["EXPECTED_DIGIT"])
IMAGE = os.environ["IMAGE_PATH"]
DEADLINE = time.monotonic() + float(os.environ.get("RETRY_SECONDS", "120"))


def multipart(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + png + f"\r\n--{boundary}--\r\n".encode(), boundary


def predict() -> tuple[int, dict]:
    with open(IMAGE, "rb") as handle:
        body, boundary = multipart(handle.read())
    request = urllib.request.Request(
        URL,
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.load(response)


def main() -> int:
    # Right after an install the gateway may still wait for a model: retry
    # connection errors and 5xx answers for a while, but not 4xx ones.
    while True:
        try:
            status, payload = predict()
            break
        except urllib.error.HTTPError as error:
            if error.code < 500 or time.monotonic() > DEADLINE:
                print(f"FAIL: HTTP {error.code}: {error.read()[:500]!r}")
                return 1
        except (urllib.error.URLError, OSError) as error:
            if time.monotonic() > DEADLINE:
                print(f"FAIL: {URL} unreachable: {error}")
                return 1
        time.sleep(5)
    if status != 201:
        print(f"FAIL: expected HTTP 201, got {status}: {payload}")
        return 1
    prediction = payload["predictions"][0]
    if prediction["digit"] != EXPECTED:
        print(f"FAIL: expected digit {EXPECTED}, got {prediction}")
        return 1
    print(f"OK: digit {prediction['digit']} (confidence {prediction['confidence']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
