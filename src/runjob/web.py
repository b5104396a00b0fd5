"""The one HTTP client of runjob (webhooks, pings): stdlib urllib, a hard timeout, no retries."""

from __future__ import annotations

TIMEOUT_S = 10.0


def send(url: str, body: bytes | None = None, content_type: str = "application/json", timeout: float = TIMEOUT_S) -> int:
    """POST `body` (GET when None) to `url`; the HTTP status, or OSError saying what failed."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        request.add_header("Content-Type", content_type)
    request.add_header("User-Agent", "runjob")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as e:
        raise OSError(f"HTTP {e.code} from {url}") from None
    except urllib.error.URLError as e:
        raise OSError(f"{url}: {e.reason}") from None
    except TimeoutError:
        raise OSError(f"{url}: no answer within {timeout:g}s") from None
