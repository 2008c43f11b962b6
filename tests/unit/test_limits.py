"""The service's bounds that need no server: the page cache (the body limit is tested on a live uvicorn)."""

from __future__ import annotations

import asyncio

from ltr_pipeline.service.limits import PageCache


def test_many_clients_at_once_share_one_rendering() -> None:
    renders = []

    def render() -> str:
        renders.append(1)
        return f"page {len(renders)}"

    async def clients(cache: PageCache, n: int) -> list[str]:
        return await asyncio.gather(*(cache.get(render) for _ in range(n)))

    assert asyncio.run(clients(PageCache(ttl=3600), 20)) == ["page 1"] * 20  # twenty clients, one rendering
    assert len(renders) == 1
    assert sorted(asyncio.run(clients(PageCache(ttl=0), 3))) == ["page 2", "page 3", "page 4"]  # no reuse at 0
