"""Cost estimates: token counts by kind times the operator's prices.

RECORDS_PRICES is a JSON object: model name -> prices in RECORDS_CURRENCY per million
tokens of each kind, e.g.
    {"gpt-realtime-2.1": {"input_audio": 32, "input_text": 4, "input_cached": 0.4,
                          "output_audio": 64, "output_text": 16}}
A kind left out costs nothing; a model left out gets no estimate (the call's cost is
empty, never a guess).

Transcription models are priced per minute of audio, not per token: their one kind is
`transcription_minute`, in RECORDS_CURRENCY per minute, e.g.
    {"gpt-transcribe": {"transcription_minute": 0.0045}}
A call's estimate is its Realtime model's tokens plus its transcription model's minutes
(the usage's `transcription_seconds`); a transcription model without that price adds
nothing, and the call's `transcription_cost` says "not priced" (None).

GPT-Live bills a session by its time, by the second and silence included: its kind is
`session_minute`, in RECORDS_CURRENCY per minute (the usage's `session_seconds`), e.g.
    {"gpt-live-1.1": {"session_minute": 0.05}}
Its delegation backend's tokens are billed apart by OpenAI and are not in the estimate.

Built in are OpenAI's list prices in USD (`DEFAULTS`) for the models we could cite; each
source is in docs/operations.md ("Cost"). The operator's RECORDS_PRICES win kind by kind
over them; with a RECORDS_CURRENCY other than USD the defaults are not used at all (a
dollar price is no estimate in euros).
"""

from __future__ import annotations

import json
import math

KINDS = ("input_audio", "input_text", "input_cached", "output_audio", "output_text")
PER_MINUTE = "transcription_minute"  # priced per minute of audio, not per 1M tokens
SESSION_MINUTE = "session_minute"  # priced per minute of a GPT-Live session

DEFAULTS_CURRENCY = "USD"
# USD per million tokens, as OpenAI's model pages list them (docs/operations.md cites them).
# The usage we keep has one cached-input count, not split into audio and text: it is priced
# at the cached *audio* input price, the higher of the two where they differ (the mini), so
# the estimate errs high rather than low. gpt-transcribe (the default
# OPENAI_TRANSCRIPTION_MODEL) is priced per minute of audio: USD per minute.
DEFAULTS = {
    "gpt-realtime-2.1": {
        "input_audio": 32.0,
        "input_text": 4.0,
        "input_cached": 0.4,
        "output_audio": 64.0,
        "output_text": 24.0,
    },
    "gpt-realtime-2.1-mini": {
        "input_audio": 10.0,
        "input_text": 0.6,
        "input_cached": 0.3,
        "output_audio": 20.0,
        "output_text": 2.4,
    },
    "gpt-transcribe": {PER_MINUTE: 0.0045},
    # $0.05 per session minute, billed by the second (OpenAI's GPT-Live model pages).
    "gpt-live-1": {SESSION_MINUTE: 0.05},
    "gpt-live-1.1": {SESSION_MINUTE: 0.05},
    # Text models for the post-call summaries (SUMMARY_MODEL): text in, cached, text out.
    "gpt-5.4-mini": {"input_text": 0.75, "input_cached": 0.075, "output_text": 4.5},
    "gpt-5-mini": {"input_text": 0.25, "input_cached": 0.025, "output_text": 2.0},
}


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
            unknown = set(prices) - {*KINDS, PER_MINUTE, SESSION_MINUTE}
            if unknown:
                kinds = ", ".join((*KINDS, PER_MINUTE, SESSION_MINUTE))
                raise ValueError(f"{model}: unknown kind {sorted(unknown)[0]!r} (kinds: {kinds})")
            for kind, price in prices.items():
                if isinstance(price, bool) or not isinstance(price, int | float):
                    raise ValueError(f"{model}.{kind}: must be a number >= 0")
                if not math.isfinite(price):  # NaN and Infinity make costs and budgets meaningless
                    raise ValueError(f"{model}.{kind}: must be a finite number")
                if price < 0:
                    raise ValueError(f"{model}.{kind}: must be a number >= 0")
            models[model] = {kind: float(price) for kind, price in prices.items()}
        return cls(models)

    def with_defaults(self, currency: str) -> PriceTable:
        """The table estimates use: `DEFAULTS` under the operator's prices (kind by kind),
        or the operator's prices alone when they are not in the defaults' currency."""
        if currency.strip().upper() != DEFAULTS_CURRENCY:
            return self
        models = {name: dict(prices) for name, prices in DEFAULTS.items()}
        for name, prices in self._models.items():
            models[name] = {**models.get(name, {}), **prices}
        return PriceTable(models)

    def estimate(self, model: str, usage: dict, transcription_model: str = "") -> float | None:
        """The cost of `usage` (records/spool.py's usage by kind): the voice `model`'s tokens
        and session minutes, plus the transcription model's minutes; None for an unknown
        voice model."""
        prices = self._models.get(model)
        if prices is None:
            return None
        total = sum(prices.get(kind, 0.0) * float(usage.get(f"{kind}_tokens") or 0) for kind in KINDS)
        session = prices.get(SESSION_MINUTE, 0.0) * float(usage.get("session_seconds") or 0.0) / 60
        return round(total / 1_000_000 + session + (self.transcription(transcription_model, usage) or 0.0), 6)

    def transcription(self, model: str, usage: dict) -> float | None:
        """The cost of the usage's `transcription_seconds` under `model`'s per-minute price;
        None when that model has none (or no model transcribed)."""
        price = self._models.get(model, {}).get(PER_MINUTE) if model else None
        if price is None:
            return None
        return round(price * float(usage.get("transcription_seconds") or 0.0) / 60, 6)

    def __str__(self) -> str:
        return json.dumps(self._models) if self._models else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceTable) and other._models == self._models

    def __hash__(self) -> int:
        return hash(str(self))
