"""The DataForSEO v3 API's own facts: hosts, paths, limits, prices and status codes.

Everything here is a fact of the API, not a choice of this provider. Sources:
``https://docs.dataforseo.com/v3/backlinks/bulk_pages_summary/live/`` (limits of the endpoint),
``https://docs.dataforseo.com/v3/appendix/errors/`` (status codes) and
``https://dataforseo.com/apis/backlinks-api`` (prices). The emulator and the client both read
them from here, so a change of the API is a change in one place.
"""

from __future__ import annotations

from typing import Final

#: Production host; HTTP Basic auth with the account's API login and password.
API_URL: Final = "https://api.dataforseo.com"
#: Free sandbox with dummy data, same credentials, same paths, nothing charged.
SANDBOX_URL: Final = "https://sandbox.dataforseo.com"

#: ``POST`` one live task: up to 1000 targets from at most 100 main domains.
BULK_PAGES_SUMMARY_PATH: Final = "/v3/backlinks/bulk_pages_summary/live"
#: ``GET`` account data (login, balance, limits); free of charge.
USER_DATA_PATH: Final = "/v3/appendix/user_data"

#: At most this many targets in one bulk_pages_summary task (endpoint doc, ``targets``).
MAX_TARGETS_PER_REQUEST: Final = 1000
#: At most this many different main (registrable) domains per task (endpoint doc, ``targets``).
MAX_MAIN_DOMAINS_PER_REQUEST: Final = 100
#: At most this many characters in ``tag`` (endpoint doc, ``tag``).
MAX_TAG_LENGTH: Final = 255
#: Live endpoints take exactly one task per POST; more answer 40000.
MAX_TASKS_PER_LIVE_POST: Final = 1
#: Simultaneous requests per account for database-backed APIs such as Backlinks (40209 above it).
MAX_SIMULTANEOUS_REQUESTS: Final = 30
#: Requests per minute per account by default (40202 above it).
DEFAULT_REQUESTS_PER_MINUTE: Final = 2000
#: A live task that runs longer than this answers 50401; client read timeouts must exceed it.
LIVE_TASK_TIMEOUT_SECONDS: Final = 120

#: Price of one bulk_pages_summary request, USD (charged only when the task succeeds).
COST_PER_REQUEST_USD: Final = 0.02
#: Price of one returned item, USD (docs example: 2 items -> 0.02006 USD).
COST_PER_ITEM_USD: Final = 0.00003

#: Values of ``rank_scale`` (endpoint doc): 0-1000 (default) or 0-100.
RANK_SCALES: Final = ("one_thousand", "one_hundred")

#: Date format of ``first_seen`` / ``lost_date``: ``"2019-11-15 12:57:46 +00:00"`` (UTC).
DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S %z"

# Status codes (https://docs.dataforseo.com/v3/appendix/errors/).
OK: Final = 20000
TOO_MANY_TASKS_IN_LIVE_POST: Final = 40000
TOO_MANY_TASKS: Final = 40006
UNAUTHORIZED: Final = 40100
ACCOUNT_NOT_VERIFIED: Final = 40104
PAYMENT_REQUIRED: Final = 40200
ACCOUNT_PAUSED: Final = 40201
RATE_LIMIT_PER_MINUTE: Final = 40202
COST_LIMIT_EXCEEDED: Final = 40203
ACCESS_DENIED: Final = 40204
DUPLICATE_TASK_LIMIT_HOUR: Final = 40205
DUPLICATE_TASK_LIMIT_DAY: Final = 40206
IP_NOT_WHITELISTED: Final = 40207
TOO_MANY_SIMULTANEOUS_REQUESTS: Final = 40209
INSUFFICIENT_FUNDS: Final = 40210
NOT_FOUND: Final = 40400
INVALID_FIELD: Final = 40501
EMPTY_POST_DATA: Final = 40502
INVALID_POST_DATA: Final = 40503
UNKNOWN_FIELDS: Final = 40506
INTERNAL_ERROR: Final = 50000
INTERNAL_ERROR_2: Final = 50001
TEMPORARILY_UNAVAILABLE: Final = 50301
LIVE_TASK_TIMEOUT: Final = 50401
