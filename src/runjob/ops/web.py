"""The one HTTP client of runjob (webhooks, pings): stdlib urllib, one deadline, no retries.

urllib's timeout is per socket operation: an endpoint that trickles a byte every few
seconds would hold it forever. So the exchange runs in a daemon thread and the caller
waits for it until one deadline for the whole exchange (monotonic), or until `cancelled()`
says a signal came: then the caller goes on and the thread is left to die with its
socket's per-read timeout (or with runjob). The thread never writes a record.

A URL is logged as scheme and host only (records/redact.py `shown_url`): webhook and ping
URLs are often tokens in themselves.
"""

from __future__ import annotations

import time

from runjob.records.redact import shown_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

TIMEOUT_S = 10.0
SLICE_S = 0.05  # how often a waiting caller looks at `cancelled`
READ_LIMIT = 65536  # of an answer's body, which nobody reads


def send(
    url: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = TIMEOUT_S,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """POST `body` (GET when None) to `url`; the HTTP status, or OSError saying what failed.

    The whole exchange ends by `deadline` (monotonic; default: now + `timeout`)."""
    import threading

    deadline = time.monotonic() + timeout if deadline is None else deadline
    result: list[int | BaseException] = []
    thread = threading.Thread(target=_exchange, args=(url, body, content_type, deadline, result), daemon=True)
    thread.start()
    while thread.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError(f"{shown_url(url)}: no complete answer within {timeout:g}s")
        if cancelled is not None and cancelled():
            raise OSError(f"{shown_url(url)}: cut short by a signal to runjob")
        thread.join(min(left, SLICE_S))
    outcome = result[0] if result else OSError(f"{shown_url(url)}: the request ended without an answer")
    if isinstance(outcome, BaseException):
        raise OSError(_reason(url, outcome)) from None
    return outcome


def _exchange(
    url: str, body: bytes | None, content_type: str, deadline: float, result: list[int | BaseException]
) -> None:
    """The request itself, in its own thread: its status or the exception, into `result`."""
    import urllib.request

    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        request.add_header("Content-Type", content_type)
    request.add_header("User-Agent", "runjob")
    try:
        with urllib.request.urlopen(request, timeout=max(0.001, deadline - time.monotonic())) as response:
            response.read(READ_LIMIT)
            result.append(int(response.status))
    except BaseException as e:  # noqa: BLE001 - whatever urllib or http.client raise (BadStatusLine...), reported by send()
        result.append(e)


def _reason(url: str, e: BaseException) -> str:
    """One line on why the exchange failed, naming the URL by scheme and host only."""
    import urllib.error

    shown = shown_url(url)
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} from {shown}"
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        return f"{shown}: {getattr(reason, 'strerror', None) or reason}"
    if isinstance(e, TimeoutError):
        return f"{shown}: no answer in time"
    if isinstance(e, ValueError):  # a URL urllib cannot use: its text may hold the token, so not quoted
        return f"{shown}: not a usable URL"
    return f"{shown}: {type(e).__name__}: {str(e)[:200]}"
