"""The example card payment: the `jsonData` a terminal sends (the predictor adds the features).
`driftline endpoint`'s curl example, the hostile suite's good requests and the client tests
send this one, so a change to the raw transaction's fields is made once."""

from __future__ import annotations


def example_transaction(event_ts: str, **fields: object) -> dict:
    """User 41 pays 12.50 at merchant 6 in France at `event_ts` (ISO 8601); `fields` override."""
    return {
        "user_id": 41,
        "merchant_id": 6,
        "amount": 12.5,
        "country": "FR",
        "category": "grocery",
        "channel": "pos",
        "event_ts": event_ts,
        **fields,
    }
