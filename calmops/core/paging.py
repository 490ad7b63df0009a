"""Reading every item of a Prefect API listing: the server returns at most :data:`PAGE` deployments, automations
or flow runs a request (``PREFECT_API_DEFAULT_LIMIT``), and past that a single read silently leaves the rest
out: with a hundred pipelines or more, a check over "every CalmOps deployment" saw only some of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

PAGE = 200  # the most the Prefect API returns at once (PREFECT_API_DEFAULT_LIMIT)


def every(read: Callable[..., list[T]], *, page: int = PAGE, **query: Any) -> list[T]:
    """All that ``read(**query, limit=…, offset=…)`` finds (a Prefect client's ``read_deployments``,
    ``read_automations``…, or a function that posts to a ``/filter`` endpoint), ``page`` items a request, until a
    page comes back short.

    >>> items = list(range(450))
    >>> every(lambda limit, offset: items[offset:offset + limit]) == items
    True
    """
    found: list[T] = []
    while True:
        batch = read(**query, limit=page, offset=len(found))
        found.extend(batch)
        if len(batch) < page:
            return found
