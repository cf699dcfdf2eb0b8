"""Reading a service's Prometheus /metrics in tests."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# A sample's name and sorted labels, e.g. ("wspool_closes_total", (("code", "1000"), ...)).
Sample = tuple[str, tuple[tuple[str, str], ...]]


async def scrape(base: str) -> dict[Sample, float]:
    """Every sample `base`/metrics exposes, by name and labels."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
