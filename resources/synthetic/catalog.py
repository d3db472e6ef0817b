"""Static reference data for the synthetic card-transaction world.

Kept in one place so validation (known currencies) and the generator agree.
"""

CATEGORIES = (
    "grocery",
    "restaurants",
    "fuel",
    "transport",
    "apparel",
    "electronics",
    "travel",
    "entertainment",
    "health",
    "jewelry",
)
# Log-amount offsets per category (EUR): groceries are small, travel and jewelry large.
CATEGORY_AMOUNT_OFFSET = {
    "grocery": -0.3,
    "restaurants": -0.2,
    "fuel": 0.1,
    "transport": -0.8,
    "apparel": 0.4,
    "electronics": 1.0,
    "travel": 1.4,
    "entertainment": 0.0,
    "health": 0.2,
    "jewelry": 1.6,
}
CHANNELS = ("pos", "ecom", "contactless")

HOME_COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "SE", "PL", "CH", "BE")
HOME_COUNTRY_WEIGHTS = (0.22, 0.18, 0.1, 0.12, 0.12, 0.1, 0.04, 0.05, 0.03, 0.04)
# Far-away countries used by the country-jump fraud pattern.
FAR_COUNTRIES = ("US", "BR", "NG", "TH", "RU", "CN")
# Countries that appear only under the covariate drift scenario.
NEW_COUNTRIES = ("JP", "AU", "MX", "ZA")

COUNTRY_CURRENCY = {
    "DE": "EUR",
    "FR": "EUR",
    "NL": "EUR",
    "ES": "EUR",
    "IT": "EUR",
    "BE": "EUR",
    "GB": "GBP",
    "SE": "SEK",
    "PL": "PLN",
    "CH": "CHF",
    "US": "USD",
    "BR": "BRL",
    "NG": "NGN",
    "TH": "THB",
    "RU": "RUB",
    "CN": "CNY",
    "JP": "JPY",
    "AU": "AUD",
    "MX": "MXN",
    "ZA": "ZAR",
}
KNOWN_CURRENCIES = frozenset(COUNTRY_CURRENCY.values())

# Chargeback reason codes, loosely after card-scheme fraud reason codes.
REASON_CODES = {
    "card_testing": "10.4-card-absent",
    "high_amount_new_merchant": "10.4-card-absent",
    "country_jump": "10.3-card-present",
    "night_contactless": "10.5-wallet",
}
