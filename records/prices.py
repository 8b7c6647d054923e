"""Cost estimates: token counts by kind times the operator's prices.

RECORDS_PRICES is a JSON object: model name -> prices in RECORDS_CURRENCY per million
tokens of each kind, e.g.
    {"gpt-realtime-2.1": {"input_audio": 32, "input_text": 4, "input_cached": 0.4,
                          "output_audio": 64, "output_text": 16}}
A kind left out costs nothing; a model left out gets no estimate (the call's cost is
empty, never a guess). No prices are built in yet: callbridge ships none it could not
cite, so the operator copies them from the provider's price list.
"""

from __future__ import annotations

import json

KINDS = ("input_audio", "input_text", "input_cached", "output_audio", "output_text")


class PriceTable:
    __slots__ = ("_models",)

    def __init__(self, models: dict[str, dict[str, float]] | None = None) -> None:
        self._models = {name: dict(prices) for name, prices in (models or {}).items()}

    @classmethod
    def parse(cls, text: str) -> PriceTable:
        """Raises ValueError naming what is wrong."""
        if not text.strip():
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError('must be a JSON object like {"MODEL": {"input_audio": 32, ...}}') from None
        if not isinstance(data, dict):
            raise ValueError("must be a JSON object of models")
        models = {}
        for model, prices in data.items():
            if not isinstance(prices, dict):
                raise ValueError(f"{model}: must be an object of prices per million tokens")
            unknown = set(prices) - set(KINDS)
            if unknown:
                raise ValueError(f"{model}: unknown kind {sorted(unknown)[0]!r} (kinds: {', '.join(KINDS)})")
            for kind, price in prices.items():
                if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
                    raise ValueError(f"{model}.{kind}: must be a number >= 0")
            models[model] = {kind: float(price) for kind, price in prices.items()}
        return cls(models)

    def estimate(self, model: str, usage: dict) -> float | None:
        """The cost of `usage` (records/spool.py's usage by kind), or None for an unknown model."""
        prices = self._models.get(model)
        if prices is None:
            return None
        total = sum(prices.get(kind, 0.0) * float(usage.get(f"{kind}_tokens") or 0) for kind in KINDS)
        return round(total / 1_000_000, 6)

    def __str__(self) -> str:
        return json.dumps(self._models) if self._models else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceTable) and other._models == self._models

    def __hash__(self) -> int:
        return hash(str(self))
