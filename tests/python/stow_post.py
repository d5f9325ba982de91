"""POST one prepared STOW-RS body with Python `requests` (HTTP/1.1) and say
what a Python client can read of the answer.

Usage: stow_post.py URL TOKEN CA_PEM CONTENT_TYPE BODY_FILE
Prints one JSON object: status, warning_headers, failed (entries of
FailedSOPSequence), or error when the response could not be read at all
(http.client refuses more than 100 header lines).
"""
import json
import sys

import requests


def main() -> None:
    url, token, ca, content_type, body_file = sys.argv[1:6]
    with open(body_file, "rb") as f:
        body = f.read()
    try:
        response = requests.post(
            url,
            data=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": content_type,
                "Accept": "application/dicom+json",
            },
            verify=ca,
            timeout=120,
        )
        answer = response.json()
    except Exception as e:  # the report names what went wrong
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    failed = answer.get("00081198", {}).get("Value", [])
    print(
        json.dumps(
            {
                "status": response.status_code,
                "warning_headers": len(response.raw.headers.getlist("Warning")),
                "failed": len(failed),
                "failure_reasons": sorted(
                    {f.get("00081197", {}).get("Value", [None])[0] for f in failed},
                    key=str,
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
