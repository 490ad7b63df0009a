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
    page comes back short. An item listed on two pages (items made or removed while reading shift the pages, and
    names that tie keep no fixed order) is returned once; a page that adds nothing new ends the reading (a server
    that ignores the offset would otherwise be read for ever).

    >>> items = [{"id": i} for i in range(450)]
    >>> every(lambda limit, offset: items[offset:offset + limit]) == items
    True
    >>> len(every(lambda limit, offset: items[:limit]))  # the offset ignored: the first page, once
    200
    """
    found: dict[Any, T] = {}
    offset = 0
    while True:
        batch = read(**query, limit=page, offset=offset)
        before = len(found)
        for item in batch:
            found.setdefault(_id(item), item)
        if len(batch) < page or len(found) == before:
            return list(found.values())
        offset += len(batch)


def _id(item: Any) -> Any:
    """An item's id: a Prefect object's ``id``, a JSON object's ``"id"``, else the item itself."""
    if isinstance(item, dict):
        return item.get("id", id(item))
    return getattr(item, "id", item)
