"""ARI requests of call set-up that do not depend on each other, run side by side.

Answering the caller, creating the externalMedia channel and creating the bridge are
independent; run one after another they cost three round trips before addChannel can
even start. Each side request gets its own connection (a requests.Session is not meant
to be shared between threads) and is bounded by the ARI client's own timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from callbridge.ari_rest import AriRest


class SideRequest:
    def __init__(self, name: str, ari: AriRest, request: Callable[[AriRest], object]) -> None:
        self.failure: Exception | None = None
        self._ari = ari
        self._request = request
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            self._request(self._ari)
        except Exception as exc:  # handed to the set-up thread, which decides what it means
            self.failure = exc
        finally:
            self._ari.close()


def wait_all(requests: list[SideRequest]) -> None:
    for request in requests:
        request.thread.join()


def finish_all(requests: list[SideRequest]) -> None:
    """Wait for every request, then raise the first failure in the calling thread."""
    wait_all(requests)
    for request in requests:
        if request.failure is not None:
            raise request.failure
